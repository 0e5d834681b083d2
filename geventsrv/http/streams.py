"""What HTTP/2's and HTTP/3's fronts share: a request stream's state, its run, its tunnel.

Both fronts multiplex requests on one connection the same way. The
connection's greenlet (HTTP/2's reader, or the QUIC endpoint's loop) never
waits: it puts each piece of a request's body in its stream's inbox and
wakes the stream. Each request runs the application in a worker greenlet of
its own (:mod:`geventsrv.http.workers`), which takes the pieces, waiting
when there are none (:meth:`StreamState.take`), and whose failures cost
that stream only (:func:`run_exchange`). What differs is the wire (frames
and credit), which each front keeps.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

from geventsrv.connection import Drained
from geventsrv.http.exchange import HttpError

if TYPE_CHECKING:
    from geventsrv.http.workers import Job

log = logging.getLogger("geventsrv.server")

#: What arrived together is taken as one piece up to this size, where pieces are small (a
#: QUIC datagram carries a kilobyte or so, and each piece costs the application a write, a
#: frame, a wake).
JOINED_PIECE = 64 * 1024


class StreamGone(ConnectionAbortedError):
    """Raised in a stream's greenlet when its stream is reset, or its connection ends."""


class StreamState:
    """One request stream's state, shared by the connection's greenlet and the stream's."""

    __slots__ = (
        "drained", "ended", "event", "exchange", "id", "inbox", "job", "local_ended", "reset",
        "tunnel",
    )  # fmt: skip

    #: Pieces that arrived together are joined up to this size when taken (0: never; an
    #: HTTP/2 frame is large enough that a copy would cost more than it saves).
    join_up_to = 0

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        #: Pieces of the request's body, as they came, not yet taken by the application.
        self.inbox: collections.deque[bytes] = collections.deque()
        #: The peer ended its side, and we ended ours.
        self.ended = False
        self.local_ended = False
        #: Why the stream is gone, once it is (the peer's reset, or ours).
        self.reset: str | None = None
        #: Set whenever something the stream's greenlet may wait for happened.
        self.event: Event | None = None
        self.exchange: Any = None
        #: The application's run on this stream, in a worker greenlet.
        self.job: Job | None = None
        #: Whether the exchange became a tunnel (a stop then interrupts its wait, once:
        #: ``drained`` says it has).
        self.tunnel = False
        self.drained = False

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`wake` (or ``timeout``); whether it came."""
        event = self.event
        if event is None:
            event = self.event = Event()
        woke = event.wait(timeout)
        event.clear()
        return woke

    def take(self, going_away: bool) -> bytes | None:
        """The next piece of the body (what has arrived, joined up to :attr:`join_up_to`),
        ``b""`` once the peer has ended the stream, None while nothing has come (wait, and
        ask again). Raises :class:`StreamGone` once the stream is reset, and
        :class:`~geventsrv.connection.Drained` once in a tunnel's wait when the server
        stops (``going_away``): it may read on after that."""
        inbox = self.inbox
        if inbox:
            piece = inbox.popleft()
            if inbox and self.join_up_to:
                pieces = [piece]
                size = len(piece)
                while inbox and size < self.join_up_to:
                    piece = inbox.popleft()
                    pieces.append(piece)
                    size += len(piece)
                piece = b"".join(pieces)
            return piece
        if self.ended:
            return b""
        if self.reset is not None:
            raise StreamGone(self.reset)
        if self.tunnel and going_away and not self.drained:
            self.drained = True
            raise Drained()
        return None


def run_exchange(
    exchange: Any,
    application: Callable[[Any], None],
    max_head: int,
    fail: Callable[[Any, str], None],
) -> None:
    """Run ``application`` on a stream's ``exchange``: what goes wrong costs the stream only.

    A header list past ``max_head`` is answered 431; an :class:`HttpError` before the
    answer's head is its refusal, after it ``fail(stream, why)`` (the front resets the
    stream), as for a bug, which is logged; a stream or connection that went ends it
    quietly.
    """
    try:
        if exchange.request.too_large:
            raise HttpError(431, f"header list over {max_head} bytes")
        application(exchange)
        exchange.end()
    except HttpError as exc:
        if not exchange.sent_head:
            exchange.status = 0
            exchange.refuse(exc)
        else:
            fail(exchange.stream, str(exc))
    except (StreamGone, gevent.GreenletExit, OSError):
        pass  # the stream or the connection went: nothing left to answer
    except Exception as exc:  # a bug must cost this stream only
        log.error("%s: stream %d failed: %r", exchange.conn.client, exchange.stream.id, exc)
        log.debug("stream failure", exc_info=True)
        fail(exchange.stream, "the server failed")


class StreamTunnel:
    """A stream after a ``2xx`` to CONNECT or an extended CONNECT (RFC 9113 8.5, RFC 8441,
    RFC 9220): its DATA both ways, through the exchange's :meth:`read_piece` and
    :meth:`write_piece`."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange

    def recv(self, size: int) -> bytes:
        piece: bytes = self.exchange.read_piece()
        return piece

    def sendall(self, data: bytes) -> None:
        self.exchange.write_piece(data, False)

    def shutdown_write(self) -> None:
        stream = self.exchange.stream
        if not stream.local_ended and stream.reset is None:
            self.exchange.write_piece(b"", True)
