"""Between accept() and the handler: who may speak, the PROXY header, the TLS handshake.

The one owner of what a handler's ``conn.sock`` is: :meth:`Prologue.open`
takes the accepted socket and returns the stream that serves it (geventsrv's
cooperative socket on the fast path, the patched socket otherwise, a TLS
stream over TLS). With no step configured it only does that.

Runs in the connection's own greenlet, so a slow or hostile client parks
only itself. Each step has a deadline for the whole step, not per read: a
client that trickles one byte a second cannot stretch a handshake past it.
Any failure raises :class:`OpeningFailed` with a short reason; the server logs
it as one line and closes that connection, nothing else. The line is at
debug level, but for what a person must fix in front of the server, at info:
bytes that are not the PROXY header the port requires, and plain HTTP sent to
the TLS port (which gets a plain-text 400 first, as nginx answers it, instead
of a reset that says nothing).

Order, as a proxy sends them: the PROXY header comes first, in clear, then the
client's own bytes, which over TLS begin with its ClientHello.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket

import gevent
from gevent.socket import socket as GeventSocket

from geventsrv import tls
from geventsrv.addresses import format_address
from geventsrv.config import Config
from geventsrv.connection import Connection, StreamSocket, linger
from geventsrv.cooperative import CooperativeSocket, PlainSocket
from geventsrv.limits import Gate, Network, client_ip
from geventsrv.proxyproto import (
    ACCEPTED_VERSIONS,
    ClosedBeforeHeader,
    ProxyProtocolError,
    read_header,
)
from geventsrv.stats import CloseReason

#: The first byte of every TLS handshake record (content type 22).
TLS_HANDSHAKE = 0x16
#: What the start of a plain HTTP request looks like: a method, then a space (or
#: a method still arriving).
PLAIN_HTTP = re.compile(rb"[A-Z]{1,16}( |$)")
PLAIN_HTTP_TEXT = (
    b"This port speaks TLS: the plain HTTP request was sent to a TLS port; use https.\n"
)
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(PLAIN_HTTP_TEXT), PLAIN_HTTP_TEXT)
)


class OpeningFailed(Exception):
    """A connection failed before its handler ran; ``str()`` says why, for the log.

    ``reason`` is the close reason counted for it (``refused``, or the gate's
    ``denied``/``limit``/``rate`` for a client named by a PROXY header);
    ``level`` the level of its log line.
    """

    def __init__(
        self, message: str, reason: CloseReason = "refused", level: int = logging.DEBUG
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.level = level


def allowed(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether ``address`` (as a socket reports it) lies in one of ``networks``.

    An IPv4 client of a dual-stack IPv6 socket (``::ffff:10.1.2.3``) counts as
    its IPv4 address.
    """
    ip = client_ip(address)
    return any(ip in network for network in networks)


class Prologue:
    """The steps ``config`` asks for before a handler gets a connection."""

    def __init__(self, config: Config, gate: Gate | None = None) -> None:
        self.fast_io = config.io == "fast"
        #: Judges the client a PROXY header names (``None``: no limits configured).
        self.gate = gate
        #: ``None`` when TLS is off; raises ConfigError now if a file is bad.
        self.tls_context = tls.server_context(config)
        self.tls_timeout = config.tls_handshake_timeout
        self.proxy_versions = (
            ACCEPTED_VERSIONS[config.proxy_protocol] if config.proxy_protocol else None
        )
        self.proxy_from = tuple(
            ipaddress.ip_network(network, strict=False) for network in config.proxy_allow_from
        )
        self.proxy_timeout = config.proxy_timeout

    @property
    def socket_class(self) -> type[socket.socket]:
        """What to make accepted sockets: the standard library's when the cooperative
        socket takes them over at once, gevent's when a step before the handler reads."""
        plain = self.fast_io and self.proxy_versions is None and self.tls_context is None
        return PlainSocket if plain else GeventSocket

    def open(self, conn: Connection, sock: socket.socket) -> StreamSocket:
        """Run the steps on ``sock``, the accepted socket; return the stream that serves it.

        Also sets ``conn.client`` and ``conn.proxy`` from a PROXY header, and
        ``conn.tls`` from the TLS handshake.
        Raises :class:`OpeningFailed`.
        """
        if self.proxy_versions is not None:
            self._read_proxy_header(conn, sock, self.proxy_versions)
        if self.tls_context is not None:
            with gevent.Timeout(
                self.tls_timeout, OpeningFailed(f"no TLS handshake within {self.tls_timeout:g} s")
            ):
                refuse_plain_http(sock)
                try:
                    stream = tls.handshake(self.tls_context, sock)
                except OSError as exc:
                    raise OpeningFailed(f"TLS handshake failed: {_reason(exc)}") from None
            conn.tls = stream.describe()
            return stream
        if not self.fast_io:
            return sock
        if type(sock) is PlainSocket:  # accepted as one: nothing ran before the handler
            return CooperativeSocket(sock)
        # The PROXY header (if any) was read through the patched socket, exactly;
        # the cooperative socket takes over the descriptor for what follows.
        return CooperativeSocket.adopt(sock)

    def _read_proxy_header(
        self, conn: Connection, sock: socket.socket, versions: tuple[int, ...]
    ) -> None:
        peer_host = conn.peer.rsplit(":", 1)[0].strip("[]")
        if not allowed(peer_host, self.proxy_from):
            raise OpeningFailed("not from an address allowed to send a PROXY header")
        with gevent.Timeout(
            self.proxy_timeout,
            OpeningFailed(f"no complete PROXY header within {self.proxy_timeout:g} s"),
        ):
            try:
                header = read_header(sock, versions)
            except ClosedBeforeHeader as exc:  # a balancer's TCP check, often: not news
                raise OpeningFailed(str(exc)) from None
            except ProxyProtocolError as exc:
                raise OpeningFailed(
                    f"bad PROXY header: {exc} (every connection must begin with one: "
                    "--proxy-protocol)",
                    level=logging.INFO,
                ) from None
            except OSError as exc:
                raise OpeningFailed(
                    f"lost while reading the PROXY header: {_reason(exc)}"
                ) from None
        conn.proxy = header
        # LOCAL (a health check from the proxy itself) and UNKNOWN keep the peer.
        if header.command == "PROXY" and header.source is not None:
            conn.client = format_address(*header.source)
            if self.gate is not None:
                refusal, conn.limit_key = self.gate.admit(header.source[0])
                if refusal is not None:
                    raise OpeningFailed(f"client refused ({refusal})", refusal)


def refuse_plain_http(sock: socket.socket) -> None:
    """Before a TLS handshake: if the client's first bytes are a plain HTTP request,
    answer a plain-text 400 and raise :class:`OpeningFailed`; else return, reading nothing."""
    try:
        start = sock.recv(16, socket.MSG_PEEK)
    except OSError as exc:
        raise OpeningFailed(f"lost before the TLS handshake: {_reason(exc)}") from None
    if not start:
        raise OpeningFailed("closed before the TLS handshake")
    if start[0] == TLS_HANDSHAKE or not PLAIN_HTTP.match(start):
        return
    try:
        sock.sendall(PLAIN_HTTP_ANSWER)
        linger(sock)
    except OSError:
        pass  # gone already: the line below is all that is left to say
    raise OpeningFailed(
        "plain HTTP sent to the TLS port: answered 400 (use https://)", level=logging.INFO
    )


def _reason(exc: OSError) -> str:
    return str(getattr(exc, "reason", None) or exc.strerror or exc)
