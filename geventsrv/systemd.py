"""systemd: sockets handed over by socket activation, and the notify protocol.

Both are plain protocols of environment variables and one datagram, read here
without libsystemd (see ``sd_listen_fds(3)`` and ``sd_notify(3)``):

* **Socket activation.** When ``LISTEN_PID`` is this process and
  ``LISTEN_FDS`` is N, descriptors 3 .. 3+N-1 are sockets already bound (and,
  for TCP, listening). The server serves them instead of binding: a listening
  stream socket for TCP, a datagram socket for UDP, at most one of each. The
  variables are then removed, so that no child takes the sockets for its own.
* **Notify.** When ``NOTIFY_SOCKET`` names a Unix datagram socket (a path, or
  ``@name`` for the abstract namespace), the server sends ``READY=1`` once it
  serves, ``STATUS=...`` with the connections open, and ``STOPPING=1`` when it
  begins to stop. Without the variable every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

from geventsrv.config import ConfigError
from geventsrv.listen import Sockets

log = logging.getLogger(__name__)

#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


def activated_sockets(environ: dict[str, str] | None = None) -> Sockets | None:
    """The sockets systemd passed this process, or ``None`` if it passed none.

    Raises :class:`~geventsrv.config.ConfigError` for sockets the server
    cannot serve (two of a kind, a stream socket not listening, not IP).
    """
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()) or not env.get("LISTEN_FDS", "").isdigit():
        return None
    count = int(env["LISTEN_FDS"])
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    found = Sockets()
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        sock = socket.socket(fileno=fd)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ConfigError(None, f"socket activation passed descriptor {fd}, not an IP socket")
        if sock.type == socket.SOCK_STREAM:
            if found.tcp is not None:
                raise ConfigError(
                    None, "socket activation passed two TCP sockets; geventsrv serves one"
                )
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise ConfigError(None, f"socket activation passed descriptor {fd} not listening")
            found.tcp = sock
        elif sock.type == socket.SOCK_DGRAM:
            if found.udp is not None:
                raise ConfigError(
                    None, "socket activation passed two UDP sockets; geventsrv serves one"
                )
            found.udp = sock
    if found.tcp is None and found.udp is None:
        return None
    return found


class Notifier:
    """Sends ``sd_notify`` messages when ``NOTIFY_SOCKET`` is set; silent otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *assignments: str) -> None:
        """Send ``READY=1``, ``STATUS=...``, ``STOPPING=1``... as one datagram."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:  # the manager went away: nothing to tell
            log.debug("sd_notify %s failed: %s", assignments, exc)
