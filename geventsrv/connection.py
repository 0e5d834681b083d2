"""A connection, and the contract every handler keeps: plain blocking-socket loops.

Each handler takes a :class:`Connection` and runs until the client closes its
side. It reads and writes with ordinary blocking ``recv``/``sendall`` calls on
``conn.sock``: geventsrv's cooperative socket by default
(:mod:`geventsrv.cooperative`), the socket ``gevent.monkey.patch_all()`` put in
the standard library's place with ``--io patched``, or a TLS stream over either.
Each of those calls parks only the connection's own greenlet, so thousands of
these loops share one thread.

Contract for every handler:

* return normally when the client has closed its sending side (``recv``
  returned ``b""``); the server then closes the socket, which sends FIN after
  every byte already written;
* let ``OSError`` (resets, broken pipes) and :class:`IdleTimeout` (which the
  server's idle reaper raises inside whichever call is waiting) propagate: the
  server turns them into one debug log line and a close reason;
* count the bytes it reads in ``conn.bytes_received`` and the bytes it writes in
  ``conn.bytes_sent`` as it goes, so the counts are right even when the
  connection dies half way (the metrics and the access log read them);
* make every wait a blocking socket call: the server's idle reaper closes a
  connection whose two counts have not changed for the idle timeout;
* for a request/response protocol, set ``conn.between_requests`` while it
  waits for the next request: at shutdown the server closes such connections
  at once (raising :class:`Drained` in the waiting call, which the handler
  lets propagate), and sets ``conn.draining`` on every connection, so that one
  in the middle of a request answers it, says it closes, and returns.

The handlers live in :mod:`geventsrv.modes`, one module per mode, beside the
table that names them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

import gevent

if TYPE_CHECKING:
    from geventsrv.proxyproto import ProxyHeader

#: Most bytes taken from the kernel by one ``recv``. 64 KiB matches the usual
#: loopback segment size, so a large upload is echoed in few system calls.
RECV_SIZE = 65536
#: After a refusal, how long and how much of the rest :func:`linger` reads (and
#: drops) before the close.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


class StreamSocket(Protocol):
    """What a handler may call on ``conn.sock``: a connected socket's blocking calls.

    Gevent's monkey-patched socket (``--io patched``),
    :class:`geventsrv.cooperative.CooperativeSocket` (``--io fast``) or,
    over TLS, :class:`geventsrv.tls.TlsStream`.
    """

    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes | memoryview, /) -> Any: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...
    def getsockname(self) -> Any: ...


class Connection:
    """One accepted client: its socket, its addresses and what it has cost."""

    __slots__ = (
        "between_requests", "bytes_received", "bytes_sent", "client", "draining", "limit_key",
        "memo", "number", "peer", "proxy", "sock", "started", "tls",
    )  # fmt: skip

    def __init__(self, sock: StreamSocket, peer: str, number: int = 0) -> None:
        self.sock = sock
        #: When it was accepted (``time.monotonic()``).
        self.started = monotonic()
        #: The socket's peer as ``host:port`` (IPv6 in brackets): a proxy's
        #: address when one sits in front.
        self.peer = peer
        #: Who the client is, as logged: the PROXY header's source address
        #: when the server reads one, else :attr:`peer`.
        self.client = peer
        #: The PROXY header the connection opened with, if the server reads one.
        self.proxy: ProxyHeader | None = None
        #: What the TLS handshake settled (version, cipher, SNI, ALPN, client
        #: certificate), over TLS; ``None`` in clear.
        self.tls: dict[str, object] | None = None
        #: This connection's place in the order the server accepted them (from 1).
        self.number = number
        #: The client key it counts against in the per-client limit, once counted.
        self.limit_key: str | None = None
        #: Bytes read from the client and written to it, so far.
        self.bytes_received = 0
        self.bytes_sent = 0
        #: Set by a request/response handler while it waits for the next request.
        self.between_requests = False
        #: Set by the server when it begins to stop: finish the request at hand, then close.
        self.draining = False
        #: What a handler works out once for the connection's life (the http mode: the
        #: part of the reflection every request of the connection shares).
        self.memo: dict[str, object] | None = None


Handler = Callable[[Connection], None]


class Drained(Exception):
    """Raised in a connection's greenlet that waited between requests when the server stops."""


class IdleTimeout(TimeoutError):
    """Raised in a connection's greenlet when it made no progress for the idle timeout."""


def linger(sock: StreamSocket) -> int:
    """Half-close, then read and drop what the client still sends, bounded in time and
    bytes; how many bytes it dropped.

    A refusal must reach the client: closing with unread bytes would send it an
    RST that can destroy the refusal before it is read (nginx's lingering close).
    """
    drained = 0
    try:
        sock.shutdown(socket.SHUT_WR)
        with gevent.Timeout(LINGER_SECONDS):
            while drained < LINGER_BYTES:
                data = sock.recv(RECV_SIZE)
                if not data:
                    break
                drained += len(data)
    except (OSError, gevent.Timeout):
        pass  # gone already, or lingered long enough: nothing left to protect
    return drained
