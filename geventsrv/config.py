"""The one typed description of a server: every tunable, its default and its limits.

The command line and the Python API build the same :class:`Config`, so a value
means the same thing whichever way it arrives. :meth:`Config.validate` is the
single place where a value is judged; it raises :class:`ConfigError` with a
message fit to show a user as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from geventsrv import modes

#: The port used when none is given: unprivileged, and easy to remember as
#: "echo (7) on 7007".
DEFAULT_PORT = 7007
DEFAULT_HOST = "127.0.0.1"

LOG_LEVELS = ("debug", "info", "warning", "error")

#: What serves a connection's socket calls (see :attr:`Config.io`).
IO_PATHS = ("fast", "patched")

MAX_PORT = 65535


class ConfigError(ValueError):
    """A configuration value is out of range; ``str()`` is a message for the user."""


@dataclass(frozen=True)
class Config:
    """Everything a server needs to know before it starts.

    ``idle_timeout`` of ``None`` (or 0 on the command line) disables the idle
    timeout. ``max_conns`` is the number of connections served at once; more
    clients wait in the kernel's listen backlog (``backlog`` entries deep)
    until a slot frees.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    mode: str = "echo"
    #: Length of the kernel accept queue. The kernel caps it at
    #: ``net.core.somaxconn``. A deep queue absorbs connection storms; when it
    #: overflows the kernel drops handshakes and those clients retry after 1,
    #: then 3 s. Measured with 10,000 connects back to back: Python's default
    #: listen() backlog (128) left 1% of clients waiting 1-1.9 s for a first
    #: echo, 2048 did once in three runs (2.1 s), 4096 never (<= 0.5 s).
    backlog: int = 4096
    max_conns: int = 10000
    #: Seconds without progress (nothing received, or a reply that cannot be
    #: sent) after which a connection is closed.
    idle_timeout: float | None = 300.0
    #: Seconds that open connections get to finish after a stop is requested.
    drain_timeout: float = 10.0
    log_level: str = "info"
    #: Serve TCP on ``host:port``.
    tcp: bool = True
    #: Serve UDP echo on the same ``host:port`` (modes echo and upper).
    udp: bool = False
    #: Processes serving the port together (SO_REUSEPORT) under a supervisor.
    workers: int = 1
    #: Set SO_REUSEPORT on the listener, so that several processes can share
    #: the port and the kernel spreads connections over them.
    reuse_port: bool = False
    #: What sits under the handlers' blocking calls: ``fast``, geventsrv's own
    #: cooperative socket (two system calls per echo), or ``patched``, the
    #: monkey-patched stdlib socket (four): the textbook path, kept to compare.
    io: str = "fast"
    #: Which worker of a supervisor this process is (1..workers), 0 for a
    #: server on its own. Named in every log line.
    worker_id: int = 0

    def validate(self) -> Config:
        """Return ``self`` if every value is usable, else raise :class:`ConfigError`."""
        if not isinstance(self.port, int) or not 0 <= self.port <= MAX_PORT:
            raise ConfigError(f"port must be an integer from 0 to {MAX_PORT}, got {self.port!r}")
        if self.mode not in modes.MODES:
            choices = ", ".join(modes.MODE_NAMES)
            raise ConfigError(f"mode must be one of {choices}, got {self.mode!r}")
        mode = modes.get(self.mode)
        if self.backlog < 1:
            raise ConfigError(f"backlog must be at least 1, got {self.backlog}")
        if self.max_conns < 1:
            raise ConfigError(f"max-conns must be at least 1, got {self.max_conns}")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ConfigError(
                f"idle-timeout must be a positive number of seconds, got {self.idle_timeout}"
            )
        if not self.drain_timeout >= 0:
            raise ConfigError(f"drain-timeout must be 0 or more seconds, got {self.drain_timeout}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.io not in IO_PATHS:
            raise ConfigError(f"io must be one of {', '.join(IO_PATHS)}, got {self.io!r}")
        if not (self.tcp or self.udp):
            raise ConfigError("nothing to serve: enable TCP, UDP or both")
        if self.udp and not mode.serves_udp:
            served = " and ".join(name for name, m in modes.MODES.items() if m.serves_udp)
            raise ConfigError(f"UDP serves the {served} modes, not {self.mode}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers!r}")
        if self.workers > 1 and not mode.across_workers:
            raise ConfigError(f"{self.mode} mode keeps its state in one process; use --workers 1")
        if not isinstance(self.worker_id, int) or not self.worker_id >= 0:
            raise ConfigError(f"worker-id must be 0 or more, got {self.worker_id!r}")
        if self.workers > 1 and self.udp:
            raise ConfigError("UDP echo runs in one process; use --workers 1 with --udp")
        return self

    def replace(self, **changes: object) -> Config:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes).validate()  # type: ignore[arg-type]


def strip_brackets(host: str) -> str:
    """``[::1]`` (as addresses are printed) -> ``::1`` (as sockets take them)."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def format_address(host: str, port: int) -> str:
    """``host:port`` as users write it, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
