"""A connection, and the contract every handler keeps: plain blocking-socket loops.

Each handler takes a :class:`Connection` and runs until the client closes its
side. It reads and writes with ordinary blocking ``recv``/``sendall`` calls;
under ``gevent.monkey.patch_all()`` each of those calls parks only the
connection's own greenlet, so thousands of these loops share one thread.

Contract for every handler:

* return normally when the client has closed its sending side (``recv``
  returned ``b""``); the server then closes the socket, which sends FIN after
  every byte already written;
* let ``OSError`` (resets, broken pipes) and ``TimeoutError`` (the idle timeout,
  which the server raises inside whichever call is waiting)
  propagate: the server turns them into one debug log line;
* count the bytes it echoed in ``conn.bytes_echoed`` as it goes, so the count
  is right even when the connection dies half way;
* make every wait a blocking socket call, and show progress: the server's idle
  reaper closes a connection whose ``bytes_echoed + progress`` has not changed
  for the idle timeout. A handler that moves data without echoing it (chat)
  bumps ``conn.progress``.

The echo and upper handlers live here; chat, which needs more, lives in
:mod:`geventsrv.chat`. :mod:`geventsrv.modes` maps mode names to handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

from gevent import sleep

if TYPE_CHECKING:
    from geventsrv.proxyproto import ProxyHeader

#: Full buffers in a row (256 KiB) after which a bulk sender steps aside.
FULL_BUFFERS_BEFORE_YIELD = 4
#: How long it steps aside: any positive value means "until the event loop's
#: next turn".
YIELD_SECONDS = 1e-6

#: Most bytes taken from the kernel by one ``recv``. 64 KiB matches the usual
#: loopback segment size, so a large upload is echoed in few system calls.
RECV_SIZE = 65536


class StreamSocket(Protocol):
    """What a handler may call on ``conn.sock``: a connected socket's blocking calls.

    Gevent's monkey-patched socket (``--io patched``),
    :class:`geventsrv.cooperative.CooperativeSocket` (``--io fast``) or,
    over TLS, :class:`geventsrv.tls.TlsStream`.
    """

    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> Any: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...
    def getsockname(self) -> Any: ...


class Connection:
    """One accepted client: its socket, its addresses and what it has cost."""

    __slots__ = (
        "bytes_echoed", "client", "limit_key", "number", "peer", "progress", "proxy", "sock",
        "started", "tls",
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
        self.bytes_echoed = 0
        #: Bumped by handlers for data moved without being counted as echoed.
        self.progress = 0


Handler = Callable[[Connection], None]


def relay(conn: Connection, transform: Callable[[bytes], bytes] | None = None) -> None:
    """Send back every chunk received, through ``transform`` if given, until EOF."""
    recv = conn.sock.recv
    sendall = conn.sock.sendall
    full_buffers = 0
    while True:
        data = recv(RECV_SIZE)
        if not data:
            return
        sendall(data if transform is None else transform(data))
        conn.bytes_echoed += len(data)
        # A full buffer means more was already waiting. A bulk sender that also
        # reads fast never makes recv() or sendall() wait, so this loop would
        # never give the hub a turn and every other connection would stall
        # behind it (measured: pings waited up to 1.5 s). After a run of full
        # buffers, step aside: a timer, unlike sleep(0), lets the hub poll for
        # I/O first. Not after every full buffer: that cost 30% of the
        # throughput at 100 KiB messages.
        if len(data) < RECV_SIZE:
            full_buffers = 0
        else:
            full_buffers += 1
            if full_buffers == FULL_BUFFERS_BEFORE_YIELD:
                full_buffers = 0
                sleep(YIELD_SECONDS)


def echo(conn: Connection) -> None:
    """RFC 862 echo: send back every byte received, unchanged, until EOF."""
    relay(conn)


def upper(conn: Connection) -> None:
    """Echo with ASCII letters upper-cased; every other byte passes unchanged."""
    relay(conn, bytes.upper)  # bytes.upper() touches only a-z
