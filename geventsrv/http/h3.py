"""HTTP/3's front (RFC 9114): a QUIC connection's request streams, each through an exchange.

The same shape as HTTP/2's front (:mod:`geventsrv.http.h2`), on QUIC
(:mod:`geventsrv.quic`): the endpoint's greenlet hands each datagram's
events to :meth:`H3Protocol.quic_event`, which never waits; aioquic's
HTTP/3 layer turns them into requests, bodies and trailers; a request starts
a worker greenlet running the same application as HTTP/1.1 and HTTP/2
(:class:`H3Exchange`), its body goes to its stream's inbox. What the
application writes is queued in aioquic and sent at the hub's next turn; a
stream with :data:`~geventsrv.quic.SEND_BACKLOG` bytes unacknowledged waits
for the peer, at most the stall bound, then is reset.

Bounds: at most ``--http2-max-streams`` requests at once per connection
(QUIC's own stream limit, MAX_STREAMS, so a client cannot even open more),
each stream's receive window ``--http2-window``, a header list at most
``--http-max-head`` bytes (431 past it). Extended CONNECT (RFC 9220) opens
the WebSocket echo on a stream, as RFC 8441 does on HTTP/2.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import gevent
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, H3Connection, encode_frame
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.events import QuicEvent, StreamDataReceived, StreamReset

from geventsrv.http.exchange import Exchange, Header, HttpError, Request, bodiless, http_date
from geventsrv.http.streams import (
    JOINED_PIECE,
    StreamGone,
    StreamState,
    StreamTunnel,
    run_exchange,
)
from geventsrv.http.workers import workers
from geventsrv.quic import SEND_BACKLOG

if TYPE_CHECKING:
    from geventsrv.http.h1 import Application, Finished
    from geventsrv.quic import QuicSession

log = logging.getLogger("geventsrv.server")

#: HTTP/3's error codes (RFC 9114 8.1) the front sends.
H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_MESSAGE_ERROR = 0x10E


class H3Stream(StreamState):
    """One request stream's state, shared by the endpoint's greenlet and the stream's; with
    what QUIC's credit needs."""

    __slots__ = ("arrived", "unread")

    #: A datagram's worth of body at a time would cost the application a write each.
    join_up_to = JOINED_PIECE

    def __init__(self, stream_id: int) -> None:
        super().__init__(stream_id)
        #: Bytes QUIC delivered on the stream (HTTP/3's framing included), and body bytes
        #: in the inbox: what the application has read is the one less the other.
        self.arrived = 0
        self.unread = 0


class H3Protocol:
    """HTTP/3 on one QUIC connection (the contract of :class:`geventsrv.quic.QuicProtocol`)."""

    def __init__(
        self,
        session: QuicSession,
        application: Application,
        finished: Finished,
        max_head: int,
        stall: float | None,
    ) -> None:
        self.session = session
        self.quic = session.quic
        self.h3 = H3Connection(session.quic)
        self.application = application
        self.finished = finished
        self.max_head = max_head
        self.stall = stall
        self.streams: dict[int, H3Stream] = {}
        self.requests = 0
        #: The highest request stream begun (GOAWAY names the one after it).
        self.last_stream = -4
        self.going_away = False
        self.workers = workers()

    @property
    def busy(self) -> bool:
        """Requests under way, or answers not yet acknowledged whole (a close now would
        discard what aioquic still holds of them)."""
        if self.streams:
            return True
        return any(
            stream_id % 4 == 0 and not stream.sender.is_finished
            for stream_id, stream in self.quic._streams.items()
        )

    def quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.arrived += len(event.data)
        elif isinstance(event, StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._drop(stream, f"reset by the client (code {event.error_code})")
            return
        try:
            happened = self.h3.handle_event(event)
        except H3Error as exc:  # aioquic closes the connection itself; say why
            log.debug("%s: HTTP/3 error: %r", self.session.conn.client, exc)
            return
        for each in happened:
            if isinstance(each, HeadersReceived):
                self._headers(each)
            elif isinstance(each, DataReceived):
                stream = self.streams.get(each.stream_id)
                if stream is None:
                    continue  # after the answer: dropped
                if each.data:
                    stream.inbox.append(each.data)
                    stream.unread += len(each.data)
                if each.stream_ended:
                    stream.ended = True
                stream.wake()

    def progress(self) -> None:
        # The writers wait on the session itself; a connection going away closes once
        # its last answer is acknowledged.
        if self.going_away and not self.busy:
            self.session.close(H3_NO_ERROR, "server stopping")

    def _headers(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers
            if stream.exchange is not None:
                stream.exchange.request.trailers = [
                    (name, value) for name, value in event.headers if not name.startswith(b":")
                ]
            stream.ended = stream.ended or event.stream_ended
            stream.wake()
            return
        if stream_id % 4 != 0:
            return  # not a client's request stream (aioquic has judged the others)
        if self.going_away:
            self._refuse_stream(stream_id, H3_REQUEST_REJECTED)
            return
        self.last_stream = max(self.last_stream, stream_id)
        try:
            request = self._request(event.headers)
        except ValueError as exc:
            log.debug("%s: stream %d: %s", self.session.conn.client, stream_id, exc)
            self._refuse_stream(stream_id, H3_MESSAGE_ERROR)
            return
        request.stream_id = stream_id
        stream = H3Stream(stream_id)
        stream.arrived = self.quic._streams[stream_id].receiver.starting_offset()
        stream.ended = event.stream_ended
        self.streams[stream_id] = stream
        self.requests += 1
        exchange = H3Exchange(self.session.conn, request, self.requests, self, stream)
        stream.exchange = exchange
        stream.job = self.workers.start(functools.partial(self._run, stream, exchange))

    def _request(self, fields: list[Header]) -> Request:
        """The request the fields make (aioquic has checked them as RFC 9114 4.3 asks)."""
        pseudo = [(name, value) for name, value in fields if name.startswith(b":")]
        headers = [(name, value) for name, value in fields if not name.startswith(b":")]
        seen = dict(pseudo)
        method = seen.get(b":method", b"")
        if method == b"CONNECT" and b":protocol" not in seen:
            target = seen.get(b":authority", b"")
        else:
            target = seen.get(b":path", b"")
        if not method or not target:
            raise ValueError("no :method, or no :path")
        request = Request(method, target, "3", headers)
        request.pseudo = pseudo
        request.protocol = seen.get(b":protocol")
        request.too_large = sum(len(n) + len(v) + 32 for n, v in fields) > self.max_head
        return request

    def _run(self, stream: H3Stream, exchange: H3Exchange) -> None:
        started = time.monotonic()
        try:
            run_exchange(exchange, self.application, self.max_head, self._fail)
        finally:
            self.finished(exchange, time.monotonic() - started)
            if not stream.local_ended and stream.reset is None:
                self._reset(stream, H3_REQUEST_CANCELLED, "the answer was cut short")
            elif stream.reset is None and not stream.ended:
                # Answered while the client still sends: the rest is not wanted (RFC 9114 4.1).
                self._stop_sending(stream.id, H3_NO_ERROR)
            self._close(stream)
            # The stream, its exchange and its job refer to each other: untied here, they
            # go when the last reference does, not at the next collection of cycles.
            stream.exchange = stream.job = None
            self.session.schedule_flush()
            if exchange.close:
                self.go_away()

    # -- ending streams ------------------------------------------------------

    def _refuse_stream(self, stream_id: int, code: int) -> None:
        self._stop_sending(stream_id, code)
        self.quic.reset_stream(stream_id, code)
        self.quic.forget(stream_id)
        self.session.schedule_flush()

    def _stop_sending(self, stream_id: int, code: int) -> None:
        stream = self.quic._streams.get(stream_id)
        if stream is not None and not stream.receiver.is_finished:
            self.quic.stop_stream(stream_id, code)

    def _fail(self, stream: H3Stream, why: str) -> None:
        self._reset(stream, H3_INTERNAL_ERROR, why)

    def _reset(self, stream: H3Stream, code: int, why: str) -> None:
        if stream.reset is None and not stream.local_ended:
            with contextlib.suppress(AssertionError, ValueError):  # aioquic closed it already
                self.quic.reset_stream(stream.id, code)
            self._stop_sending(stream.id, code)
            self.session.schedule_flush()
        self._drop(stream, why)

    def _drop(self, stream: H3Stream, why: str) -> None:
        if stream.reset is None:
            stream.reset = why
        stream.wake()
        job = stream.job
        if job is not None and job.worker is not gevent.getcurrent():
            job.interrupt(StreamGone(why))

    def _close(self, stream: H3Stream) -> None:
        if self.streams.pop(stream.id, None) is not None:
            self.quic.forget(stream.id)

    def go_away(self) -> None:
        """GOAWAY (RFC 9114 5.2): requests after the last one begun are refused; the
        connection closes once those under way are answered."""
        if self.going_away:
            return
        self.going_away = True
        control = self.h3._local_control_stream_id
        if control is not None:
            frame = encode_frame(FrameType.GOAWAY, encode_uint_var(self.last_stream + 4))
            self.quic.send_stream_data(control, frame)
        if not self.busy:
            self.session.close(H3_NO_ERROR, "server stopping")
        else:
            self.session.schedule_flush()
            for stream in self.streams.values():
                if stream.tunnel:
                    stream.wake()

    def closed(self) -> None:
        for stream in list(self.streams.values()):
            self._drop(stream, "connection closed")

    # -- what the streams' greenlets call -----------------------------------------------------

    def send_headers(self, stream: H3Stream, headers: list[Header], end: bool) -> None:
        if stream.reset is not None:
            raise StreamGone(stream.reset)
        self.h3.send_headers(stream.id, headers, end_stream=end)
        if end:
            stream.local_ended = True
        self.session.schedule_flush()

    def send_data(self, stream: H3Stream, data: bytes, end: bool) -> None:
        """Queue ``data``, then wait while too much of the stream is unacknowledged."""
        if stream.reset is not None:
            raise StreamGone(stream.reset)
        self.h3.send_data(stream.id, data, end_stream=end)
        if end:
            stream.local_ended = True
        session = self.session
        session.schedule_flush()
        sender = self.quic._streams[stream.id].sender
        while sender._buffer_stop - sender._buffer_start > SEND_BACKLOG:
            if not session.wait_progress(self.stall) or session.ended:
                if stream.reset is None:
                    self._reset(stream, H3_REQUEST_CANCELLED, "no acknowledgement in time")
                raise StreamGone(stream.reset or "connection closed")
            if stream.reset is not None:
                raise StreamGone(stream.reset)

    def next_piece(self, stream: H3Stream, exchange: H3Exchange) -> bytes:
        """The stream's next piece of body, waiting for it (credited back as it is taken);
        ``b""`` once the client has ended it."""
        while (piece := stream.take(self.going_away)) is None:
            stream.wait()
        if piece:
            stream.unread -= len(piece)
            exchange.received += len(piece)
            self.quic.consume(stream.id, stream.arrived - stream.unread)
            self.session.schedule_flush()
        return piece


class H3Exchange(Exchange):
    """A request stream's request and its response: HEADERS, DATA, trailers."""

    __slots__ = ("_h3", "_head", "_no_body", "sent_head", "stream")

    def __init__(
        self, conn: object, request: Request, number: int, h3: H3Protocol, stream: H3Stream
    ) -> None:
        super().__init__(conn, request, number)  # type: ignore[arg-type]
        self._h3 = h3
        self.stream = stream
        #: The response's fields, held until the first piece of the body (or its end).
        self._head: list[Header] | None = None
        self._no_body = False
        self.sent_head = False

    def body(self) -> Iterator[bytes]:
        while piece := self._h3.next_piece(self.stream, self):
            yield piece

    def respond(
        self, status: int, headers: list[Header], length: int | None = None, date: bool = True
    ) -> None:
        self.status = status
        fields = [(b":status", b"%d" % status)]
        fields += [(name.lower(), value) for name, value in headers]
        if length is not None and not (bodiless(status) and status != 304):
            fields.append((b"content-length", b"%d" % length))
        if date:
            fields.append((b"date", http_date()))
        self._no_body = self.request.method == b"HEAD" or bodiless(status)
        self._head = fields

    def _send_head(self, end: bool) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self.sent_head = True
            self._h3.send_headers(self.stream, head, end)

    def send(self, data: bytes | memoryview) -> None:
        if self._no_body or not data or self.stream.local_ended:
            return
        self._send_head(False)
        self._h3.send_data(self.stream, bytes(data), False)

    def end(self, trailers: list[Header] | None = None) -> None:
        stream = self.stream
        if stream.local_ended or stream.reset is not None:
            return
        if self.status == 0:
            raise HttpError(500, "the server gave no answer")
        if trailers and not self._no_body:
            self._send_head(False)
            fields = [(name.lower(), value) for name, value in trailers]
            self._h3.send_headers(stream, fields, True)
        elif self._head is not None:
            self._send_head(True)
        else:
            self._h3.send_data(stream, b"", True)

    def answer(
        self, status: int, headers: list[Header], body: bytes | memoryview, date: bool = True
    ) -> None:
        self.respond(status, headers, len(body), date)
        if self._no_body or not body:
            return self.end()
        self._send_head(False)
        self._h3.send_data(self.stream, bytes(body), True)

    def tunnel(self, status: int, headers: list[Header]) -> StreamTunnel:
        self.respond(status, headers)
        self._send_head(False)
        self.stream.tunnel = True
        self.tunnelled = True
        return StreamTunnel(self)

    # What a tunnel reads and writes (the extended CONNECT, RFC 9220).

    def read_piece(self) -> bytes:
        return self._h3.next_piece(self.stream, self)

    def write_piece(self, data: bytes, end: bool) -> None:
        self._h3.send_data(self.stream, bytes(data), end)
