"""Binding: the TCP listener, the UDP socket, and both on one port number.

Plain socket calls; nothing here waits, so it works the same in a patched or
an unpatched process. Every failure is a :class:`ListenError` whose message
names the address and the cause, fit to show a user as it is.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from geventsrv.addresses import format_address
from geventsrv.config import Config

#: With port 0 and both transports, the port the kernel picks for TCP may be
#: taken for UDP: tries before giving up.
SAME_PORT_ATTEMPTS = 5


def somaxconn() -> int:
    """The kernel's cap on a listen backlog (``net.core.somaxconn``)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as file:
            return int(file.read())
    except (OSError, ValueError):
        return socket.SOMAXCONN


class ListenError(OSError):
    """The server could not bind or listen; ``str()`` names the address and the cause."""


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def open_listener(config: Config, listen: bool = True) -> socket.socket:
    """Bind and listen as ``config`` says; :class:`ListenError` names the address on failure.

    With ``listen=False`` the socket is only bound: it holds the address (and,
    with ``config.reuse_port``, lets other processes share it) without
    taking connections.
    """
    where = format_address(config.host, config.port)
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            config.host, config.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server bind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        if listen:
            # The kernel would cap a longer backlog silently; capping it here
            # keeps any value Config accepts within what listen() takes.
            sock.listen(min(config.backlog, somaxconn()))
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {where}: {_reason(exc)}") from None
    return sock


def open_datagram_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` (port 0: any free one). Raises ``OSError``."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Sockets:
    """What :func:`open_sockets` bound: a TCP listener, a UDP socket, or both."""

    tcp: socket.socket | None = None
    udp: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` bound; both transports share the port."""
        sock = self.tcp or self.udp
        assert sock is not None
        host, port = sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        for sock in (self.tcp, self.udp):
            if sock is not None:
                sock.close()


def open_sockets(config: Config) -> Sockets:
    """Open what ``config`` serves (TCP, UDP or both: UDP for its echo, or for HTTP/3) on
    one port number.

    Raises :class:`ListenError` naming the address (and ``(udp)`` when only
    the datagram socket failed).
    """
    udp = config.udp or (config.http3 and config.tls_cert is not None)  # UDP echo, or QUIC
    attempts = SAME_PORT_ATTEMPTS if config.tcp and udp and config.port == 0 else 1
    for attempt in range(attempts):
        tcp = open_listener(config) if config.tcp else None
        if not udp:
            return Sockets(tcp=tcp)
        port = tcp.getsockname()[1] if tcp is not None else config.port
        try:
            return Sockets(tcp=tcp, udp=open_datagram_socket(config.host, port))
        except OSError as exc:
            if tcp is not None:
                tcp.close()
            if attempt + 1 == attempts:
                where = format_address(config.host, port)
                raise ListenError(
                    exc.errno, f"cannot listen on {where} (udp): {_reason(exc)}"
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover
