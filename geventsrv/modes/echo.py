"""``--mode echo`` and ``--mode upper``: every byte back as it came (RFC 862), or upper-cased.

The handler is the whole of what the project teaches: a loop of blocking
``recv`` and ``sendall`` calls that parks only its own greenlet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gevent import sleep

from geventsrv.connection import RECV_SIZE, Connection, Handler

if TYPE_CHECKING:
    from geventsrv.config import Config

#: Full buffers in a row (256 KiB) after which a bulk sender steps aside.
FULL_BUFFERS_BEFORE_YIELD = 4
#: How long it steps aside: any positive value means "until the event loop's
#: next turn".
YIELD_SECONDS = 1e-6


def relay(conn: Connection, transform: Callable[[bytes], bytes] | None = None) -> None:
    """Send back every chunk received, through ``transform`` if given, until EOF."""
    recv = conn.sock.recv
    sendall = conn.sock.sendall
    full_buffers = 0
    while True:
        data = recv(RECV_SIZE)
        if not data:
            return
        size = len(data)
        conn.bytes_received += size
        sendall(data if transform is None else transform(data))  # the same length
        conn.bytes_sent += size
        # A full buffer means more was already waiting. A bulk sender that also
        # reads fast never makes recv() or sendall() wait, so this loop would
        # never give the hub a turn and every other connection would stall
        # behind it (measured: pings waited up to 1.5 s). After a run of full
        # buffers, step aside: a timer, unlike sleep(0), lets the hub poll for
        # I/O first. Not after every full buffer: that cost 30% of the
        # throughput at 100 KiB messages.
        if size < RECV_SIZE:
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


def echo_handler(config: Config) -> Handler:
    """``--mode echo``'s handler (one function serves every connection)."""
    return echo


def upper_handler(config: Config) -> Handler:
    """``--mode upper``'s handler."""
    return upper
