"""HTTP/2's front (RFC 9113): a connection's streams, each answered through an exchange.

The greenlet shape: the connection's own greenlet is its *reader*. It only
reads, parses frames (:mod:`geventsrv.http.h2wire`) and hands what they carry
on: a stream's request starts a greenlet of its own that runs the same
application as HTTP/1.1 (:class:`H2Exchange`), a stream's body goes to its
inbox, a window update wakes whoever waits for it. It never waits for a
writer or for flow control. One *writer* greenlet owns the socket's sending
side: everyone else queues whole frames, and it sends what has queued in one
``sendall``. A stream that has no window to send in waits, holding at most
the frame it was making; one whose peer grants none for the idle timeout is
reset.

Bounded, since the peer controls it all (each costs the connection only, with
GOAWAY and the code the best servers use):

* streams: at most ``--http2-max-streams`` at once (more are refused with
  REFUSED_STREAM); a header block at most ``--http-max-head`` bytes decoded
  (431 past it, or ENHANCE_YOUR_CALM past sixteen times that, the most ever
  decoded), and at most :data:`MAX_CONTINUATIONS` frames long;
* what is held: a stream's unread body at most its window, all of them at
  most the connection's window; what waits to be sent at most
  :data:`WRITE_BACKLOG` bytes before senders wait (and a peer that leaves
  ACKs unread past :data:`CONTROL_BACKLOG` is closed);
* work that makes no progress: streams the peer resets before their answer
  (rapid reset), and SETTINGS, PING, PRIORITY, empty DATA and unknown frames,
  each from a budget that refills over time; spent, ENHANCE_YOUR_CALM.

Everything RFC 9113 forbids is answered as it says: a stream error
(RST_STREAM) where the stream alone is at fault, a connection error (GOAWAY
and a close) where the connection's state is.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gevent
import greenlet
import hpack
from gevent.event import Event

from geventsrv.connection import RECV_SIZE, Drained
from geventsrv.http import h2wire as wire
from geventsrv.http.exchange import Exchange, Header, HttpError, Request, bodiless, http_date
from geventsrv.http.streams import StreamGone, StreamState, StreamTunnel, run_exchange
from geventsrv.http.workers import workers
from geventsrv.limits import TokenBuckets

if TYPE_CHECKING:
    from geventsrv.connection import Connection
    from geventsrv.http.h1 import Application, Finished

log = logging.getLogger("geventsrv.server")

#: Queued bytes past which a stream's sending waits for the writer.
WRITE_BACKLOG = 256 * 1024
#: Queued bytes past which the peer is taken to leave its ACKs unread on purpose.
CONTROL_BACKLOG = 4 << 20
#: CONTINUATION frames one header block may take.
MAX_CONTINUATIONS = 128
#: Streams reset by the peer before their answer (and streams refused): a budget
#: refilled at the stream limit per second, of twice the stream limit.
RESET_BUDGET_FACTOR = 2
#: Frames that cost work and make no progress (SETTINGS, PING, PRIORITY, empty
#: DATA, unknown types): a burst of this many, refilled at a tenth of it per second.
IDLE_FRAME_BUDGET = 1000
#: Connection-specific fields an HTTP/2 request may not carry (RFC 9113 8.2.2).
CONNECTION_FIELDS = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority", b":protocol"))


class GoAway(Exception):
    """A connection error: GOAWAY with ``code``, then the close."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class ResetStream(Exception):
    """A stream error: RST_STREAM with ``code``; the connection goes on."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class Limits:
    """What an HTTP/2 connection allows, from the settings."""

    def __init__(
        self,
        max_streams: int,
        window: int,
        max_frame: int,
        max_head: int,
        stall: float | None,
        enable_connect_protocol: bool = False,
    ) -> None:
        #: ``Alt-Svc``'s value for answers over TLS, by local port, where HTTP/3 is served.
        self.alt_svc: dict[int, bytes] = {}
        self.max_streams = max_streams
        self.window = window
        #: The connection's receive window: what all streams may hold unread together.
        self.connection_window = min(wire.MAX_WINDOW, max(window * 4, 1 << 20))
        self.max_frame = max_frame
        self.max_head = max_head
        #: Seconds a stream may wait for the peer's window before it is reset.
        self.stall = stall
        self.enable_connect_protocol = enable_connect_protocol

    def settings(self) -> dict[int, int]:
        values = {
            wire.MAX_CONCURRENT_STREAMS: self.max_streams,
            wire.INITIAL_WINDOW_SIZE: self.window,
            wire.MAX_FRAME_SIZE: self.max_frame,
            wire.MAX_HEADER_LIST_SIZE: self.max_head,
            wire.ENABLE_PUSH: 0,
        }
        if self.enable_connect_protocol:
            values[wire.ENABLE_CONNECT_PROTOCOL] = 1
        return values


class Stream(StreamState):
    """One stream's state, shared by the reader and the stream's greenlet; with HTTP/2's
    flow control."""

    __slots__ = ("consumed", "declared_length", "received", "recv_window", "send_window")

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        super().__init__(stream_id)
        self.send_window = send_window
        #: What the peer may still send on this stream before our next WINDOW_UPDATE.
        self.recv_window = recv_window
        #: Body bytes read by the application, not yet credited back to the peer.
        self.consumed = 0
        self.received = 0
        self.declared_length: int | None = None


class Writer:
    """The connection's sending side: one greenlet sends, in order, what the others queue.

    It parks in the hub while nothing is queued; the first :meth:`write` after that
    wakes it, from the hub's next turn, so that a turn's frames go out in one ``sendall``.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.queued: list[bytes] = []
        #: Bytes queued and not yet handed to the socket.
        self.size = 0
        self.sending = False
        #: Set while the queue is under :data:`WRITE_BACKLOG` (senders wait on it).
        self.room = Event()
        self.room.set()
        self.failed: OSError | None = None
        self._hub = gevent.get_hub()
        self._parked = False
        self.greenlet = greenlet.greenlet(self._run, parent=self._hub)
        self._hub.loop.run_callback(self.greenlet.switch)

    def write(self, data: bytes) -> None:
        self.queued.append(data)
        self.size += len(data)
        if self.size > WRITE_BACKLOG:
            self.room.clear()
        if self._parked:
            self._parked = False
            self._hub.loop.run_callback(self.greenlet.switch)

    def _run(self) -> None:
        conn, queued, hub = self.conn, self.queued, self._hub
        try:
            while True:
                while queued:
                    data = b"".join(queued)
                    queued.clear()
                    self.size = 0
                    self.sending = True
                    conn.sock.sendall(data)
                    self.sending = False
                    conn.bytes_sent += len(data)
                self.room.set()
                self._parked = True
                hub.switch()
        except OSError as exc:
            self.failed = exc
            self.room.set()

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until what is queued has been sent (before a close), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while (self.queued or self.sending) and self.failed is None:
            if time.monotonic() > deadline:
                return
            gevent.sleep(0.001)

    def stop(self) -> None:
        """End the writer (what is still queued is dropped)."""
        writer = self.greenlet
        if not writer.dead:
            self._parked = False
            self._hub.loop.run_callback(self._end)

    def _end(self) -> None:
        if not self.greenlet.dead:
            self.greenlet.throw(gevent.GreenletExit)


def serve(
    conn: Connection,
    application: Application,
    finished: Finished,
    limits: Limits,
    first: bytes = b"",
    upgraded: tuple[Request, bytes, bytes] | None = None,
) -> None:
    """Serve ``conn`` as HTTP/2 until either side ends it.

    ``first``: bytes already read (the client preface, at least its start).
    ``upgraded``: after an ``Upgrade: h2c`` that was accepted, the request (stream 1,
    its body already read) and the client's ``HTTP2-Settings``.
    """
    H2Connection(conn, application, finished, limits).serve(first, upgraded)


class H2Connection:
    """One HTTP/2 connection: the reader's state, and what the streams share."""

    def __init__(
        self, conn: Connection, application: Application, finished: Finished, limits: Limits
    ) -> None:
        self.conn = conn
        self.application = application
        self.finished = finished
        self.limits = limits
        self.streams: dict[int, Stream] = {}
        self.last_stream = 0
        #: Streams this side reset: their late frames are ignored (RFC 9113 5.1).
        self.reset_by_us: dict[int, None] = {}
        #: Streams closed otherwise, recently: frames on them are STREAM_CLOSED errors.
        self.closed_ids: dict[int, None] = {}
        #: The connection's own greenlet, the reader.
        self.reader: Any = None
        self.send_window = wire.DEFAULT_WINDOW
        self.peer_window = wire.DEFAULT_WINDOW
        self.peer_max_frame = wire.DEFAULT_FRAME_SIZE
        self.recv_window = limits.connection_window
        self.consumed = 0
        #: Streams waiting for the connection's send window.
        self.blocked: set[Stream] = set()
        self.decoder = wire.BlockDecoder(limits.max_head * 16)
        self.writer = Writer(conn)
        self.workers = workers()
        #: A header block being received in pieces: (stream, END_STREAM, depends on
        #: itself, pieces, size, CONTINUATION frames).
        self.continuing: tuple[int, bool, bool, list[bytes], int, int] | None = None
        self.resets = TokenBuckets(
            limits.max_streams, limits.max_streams * RESET_BUDGET_FACTOR, max_tracked=1
        )
        self.idle_frames = TokenBuckets(IDLE_FRAME_BUDGET / 10, IDLE_FRAME_BUDGET, max_tracked=1)
        #: GOAWAY sent: no new streams; the connection ends once the last one is done.
        self.going_away = False
        self.requests = 0
        #: ``Alt-Svc``'s value, sent with every answer over TLS when HTTP/3 is served.
        self.alt_svc = (
            limits.alt_svc.get(conn.sock.getsockname()[1])
            if limits.alt_svc and conn.tls is not None
            else None
        )

    # -- the reader ---------------------------------------------------------------------

    def serve(self, first: bytes, upgraded: tuple[Request, bytes, bytes] | None) -> None:
        conn = self.conn
        self.reader = gevent.getcurrent()
        self.writer.write(wire.settings_frame(self.limits.settings()))
        extra = self.limits.connection_window - wire.DEFAULT_WINDOW
        if extra > 0:
            self.writer.write(wire.window_update(0, extra))
        try:
            if upgraded is not None:
                request, body, settings = upgraded
                self._apply_settings(settings)
                self._start_upgraded(request, body)
            buffer = self._read_preface(first)
            while True:
                buffer = self._frames(buffer)
                if conn.draining:
                    self._go_away()
                if self.going_away and not self.streams:
                    return
                if self.writer.failed is not None:
                    return
                data = self._recv()
                if not data:
                    return
                buffer = buffer + data if buffer else data
        except GoAway as exc:
            log.debug("%s: HTTP/2 connection error %d: %s", conn.client, exc.code, exc)
            self.writer.write(wire.goaway(self.last_stream, exc.code, str(exc).encode()))
            self.writer.flush()
        finally:
            for stream in list(self.streams.values()):
                self._reset(stream, None, "the connection ended")
            self.writer.flush(0.2)
            self.writer.stop()

    def _recv(self) -> bytes:
        """What the client sent next; ``b""`` when it closed, or when the connection is
        going away and its last stream is done (which interrupts this wait)."""
        conn = self.conn
        # A stopping server interrupts this wait (Drained): then GOAWAY, and the streams
        # in flight go on to their end, the reader with them.
        conn.between_requests = not self.going_away
        try:
            data = conn.sock.recv(RECV_SIZE)
        except Drained:
            self._go_away()
            return self._recv() if self.streams else b""
        finally:
            conn.between_requests = False
        conn.bytes_received += len(data)
        return data

    def _go_away(self) -> None:
        """GOAWAY with the last stream taken: the streams in flight finish, no new ones."""
        if self.going_away:
            return
        self.going_away = True
        self.writer.write(wire.goaway(self.last_stream, wire.NO_ERROR))
        for stream in self.streams.values():
            if stream.tunnel:
                stream.wake()  # a tunnel's wait ends, and with it the tunnel

    def _read_preface(self, first: bytes) -> bytes:
        buffer = first
        while len(buffer) < len(wire.PREFACE):
            if not wire.PREFACE.startswith(buffer):
                break
            data = self._recv()
            if not data:
                raise GoAway(wire.PROTOCOL_ERROR, "closed before the preface")
            buffer += data
        if not buffer.startswith(wire.PREFACE):
            raise GoAway(wire.PROTOCOL_ERROR, "not the HTTP/2 client preface")
        rest = buffer[len(wire.PREFACE) :]
        if len(rest) >= 9:  # the preface's own SETTINGS must come first (RFC 9113 3.4)
            _, kind, flags, _ = wire.parse_head(rest[:9])
            if kind != wire.SETTINGS or flags & wire.ACK:
                raise GoAway(wire.PROTOCOL_ERROR, "the preface must end in SETTINGS")
        return rest

    def _frames(self, buffer: bytes) -> bytes:
        """Act on every whole frame at the start of ``buffer``; what is left of it."""
        view = memoryview(buffer)
        at, end = 0, len(buffer)
        limit = self.limits.max_frame
        while end - at >= 9:
            length, kind, flags, stream_id = wire.parse_head(view[at : at + 9])
            if length > limit:
                raise GoAway(wire.FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            if end - at < 9 + length:
                break
            payload = bytes(view[at + 9 : at + 9 + length])
            at += 9 + length
            self._frame(kind, flags, stream_id, payload)
        return buffer[at:] if at else buffer

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.continuing is not None and kind != wire.CONTINUATION:
            raise GoAway(wire.PROTOCOL_ERROR, "a header block was cut by another frame")
        try:
            if kind == wire.DATA:
                self._data(flags, stream_id, payload)
            elif kind == wire.HEADERS:
                self._headers(flags, stream_id, payload)
            elif kind == wire.CONTINUATION:
                self._continuation(flags, stream_id, payload)
            elif kind == wire.WINDOW_UPDATE:
                self._window_update(stream_id, payload)
            elif kind == wire.RST_STREAM:
                self._rst_stream(stream_id, payload)
            elif kind == wire.SETTINGS:
                self._settings(flags, stream_id, payload)
            elif kind == wire.PING:
                self._ping(flags, stream_id, payload)
            elif kind == wire.PRIORITY:
                self._priority(stream_id, payload)
            elif kind == wire.GOAWAY:
                if stream_id:
                    raise GoAway(wire.PROTOCOL_ERROR, "GOAWAY on a stream")
                if len(payload) < 8:
                    raise GoAway(wire.FRAME_SIZE_ERROR, "GOAWAY under 8 bytes")
                self._go_away()
            elif kind == wire.PUSH_PROMISE:
                raise GoAway(wire.PROTOCOL_ERROR, "a client may not push")
            else:  # unknown types are ignored (RFC 9113 5.5), within the budget
                self._spend_idle()
        except ResetStream as exc:
            stream = self.streams.get(stream_id)
            if stream is not None:
                self._reset(stream, exc.code, str(exc))
            else:
                self._send_reset(stream_id, exc.code)

    # -- frames ---------------------------------------------------------------------------

    def _known(self, stream_id: int, kind: str) -> Stream | None:
        """The open stream ``stream_id``, or None for one this side reset; a connection
        error for a stream never opened or closed otherwise."""
        if stream_id == 0:
            raise GoAway(wire.PROTOCOL_ERROR, f"{kind} on stream 0")
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream
        if stream_id > self.last_stream:
            raise GoAway(wire.PROTOCOL_ERROR, f"{kind} on idle stream {stream_id}")
        if stream_id in self.reset_by_us:
            return None
        raise GoAway(wire.STREAM_CLOSED, f"{kind} on closed stream {stream_id}")

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        size = len(payload)  # counted against the windows with its padding
        if self.recv_window < size:
            raise GoAway(wire.FLOW_CONTROL_ERROR, "DATA past the connection's window")
        self.recv_window -= size
        stream = self._known(stream_id, "DATA")
        data = _unpad(flags, payload, "DATA")
        if stream is None or stream.ended:
            self._credit(None, size)  # dropped: the connection's window is given back
            if stream is not None:
                raise ResetStream(wire.STREAM_CLOSED, "DATA after END_STREAM")
            return
        if stream.recv_window < size:
            self._credit(None, size)
            raise ResetStream(wire.FLOW_CONTROL_ERROR, "DATA past the stream's window")
        stream.recv_window -= size
        if size - len(data):  # the padding is not the body's: given back at once
            self._credit(stream, size - len(data))
        if data:
            stream.received += len(data)
            declared = stream.declared_length
            if declared is not None and stream.received > declared:
                raise ResetStream(wire.PROTOCOL_ERROR, "more DATA than its content-length")
            stream.inbox.append(data)
        elif not flags & wire.END_STREAM:
            self._spend_idle()  # an empty DATA frame that ends nothing
        if flags & wire.END_STREAM:
            self._end_remote(stream)
        stream.wake()

    def _end_remote(self, stream: Stream) -> None:
        declared = stream.declared_length
        if declared is not None and stream.received != declared:
            raise ResetStream(wire.PROTOCOL_ERROR, "DATA short of its content-length")
        stream.ended = True
        if stream.local_ended:
            self._close(stream)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise GoAway(wire.PROTOCOL_ERROR, "HEADERS on stream 0")
        if stream_id % 2 == 0:
            raise GoAway(wire.PROTOCOL_ERROR, "a client's streams are odd")
        block = _unpad(flags, payload, "HEADERS")
        depends_on_itself = False
        if flags & wire.PRIORITY_FLAG:
            if len(block) < 5:
                raise GoAway(wire.FRAME_SIZE_ERROR, "HEADERS too short for priority")
            depends_on_itself = int.from_bytes(block[:4], "big") & 0x7FFFFFFF == stream_id
            block = block[5:]
        end_stream = bool(flags & wire.END_STREAM)
        if not flags & wire.END_HEADERS:
            if len(block) > self.limits.max_head * 16:
                raise GoAway(wire.ENHANCE_YOUR_CALM, "a header block too large")
            self.continuing = (stream_id, end_stream, depends_on_itself, [block], len(block), 0)
            return
        self._header_block(stream_id, end_stream, block, depends_on_itself)

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self.continuing is None or self.continuing[0] != stream_id:
            raise GoAway(wire.PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        first_id, end_stream, depends_on_itself, pieces, size, count = self.continuing
        size += len(payload)
        count += 1
        if size > self.limits.max_head * 16 or count > MAX_CONTINUATIONS:
            raise GoAway(wire.ENHANCE_YOUR_CALM, "a header block that does not end")
        pieces.append(payload)
        if not flags & wire.END_HEADERS:
            self.continuing = (first_id, end_stream, depends_on_itself, pieces, size, count)
            return
        self.continuing = None
        self._header_block(stream_id, end_stream, b"".join(pieces), depends_on_itself)

    def _header_block(
        self, stream_id: int, end_stream: bool, block: bytes, depends_on_itself: bool = False
    ) -> None:
        try:
            decoded = self.decoder.decode(block)
        except hpack.OversizedHeaderListError:
            raise GoAway(wire.ENHANCE_YOUR_CALM, "a header list too large") from None
        except hpack.HPACKError as exc:
            raise GoAway(wire.COMPRESSION_ERROR, f"HPACK: {exc}") from None
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._trailers(stream, end_stream, list(decoded.fields))
            return
        if stream_id <= self.last_stream:
            if stream_id in self.reset_by_us:
                return
            if stream_id in self.closed_ids:
                raise GoAway(wire.STREAM_CLOSED, f"HEADERS on closed stream {stream_id}")
            raise GoAway(wire.PROTOCOL_ERROR, f"stream {stream_id} after a higher one")
        self.last_stream = stream_id
        if depends_on_itself:
            raise ResetStream(wire.PROTOCOL_ERROR, "a stream may not depend on itself")
        if self.going_away:
            self._send_reset(stream_id, wire.REFUSED_STREAM)
            return
        if len(self.streams) >= self.limits.max_streams:
            self._spend_reset()
            self._send_reset(stream_id, wire.REFUSED_STREAM)
            return
        # A block met again while the decoder's table holds makes the same request: it is
        # judged once, and each stream gets a copy (clients repeat a handful of blocks).
        prototype = decoded.derived
        if prototype is None:
            prototype = decoded.derived = self._request(decoded.fields)
        request = prototype.copy()
        request.stream_id = stream_id
        stream = Stream(stream_id, self.peer_window, self.limits.window)
        stream.declared_length = request.content_length
        self.streams[stream_id] = stream
        if end_stream:
            self._end_remote(stream)
        self._start(stream, request)

    def _trailers(self, stream: Stream, end_stream: bool, fields: list[Header]) -> None:
        if stream.ended:
            raise ResetStream(wire.STREAM_CLOSED, "HEADERS after END_STREAM")
        if not end_stream:
            raise ResetStream(wire.PROTOCOL_ERROR, "trailers must end the stream")
        if any(name.startswith(b":") for name, _ in fields):
            raise ResetStream(wire.PROTOCOL_ERROR, "a pseudo-header in trailers")
        _check_fields(fields)
        if stream.exchange is not None:
            stream.exchange.request.trailers = fields
        self._end_remote(stream)
        stream.wake()

    def _request(self, fields: list[Header]) -> Request:
        """The request the fields make, or a stream error for a malformed one (RFC 9113 8.3).

        One past ``--http-max-head`` is made, and marked ``too_large`` (answered 431)."""
        pseudo: list[Header] = []
        headers: list[Header] = []
        seen: dict[bytes, bytes] = {}
        for name, value in fields:
            if name.startswith(b":"):
                if headers:
                    raise ResetStream(wire.PROTOCOL_ERROR, "a pseudo-header after the fields")
                if name not in REQUEST_PSEUDO or name in seen:
                    raise ResetStream(wire.PROTOCOL_ERROR, f"pseudo-header {name!r}")
                seen[name] = value
                pseudo.append((name, value))
            else:
                headers.append((name, value))
        _check_fields(headers)
        method = seen.get(b":method")
        protocol = seen.get(b":protocol")
        if method is None:
            raise ResetStream(wire.PROTOCOL_ERROR, "no :method")
        if protocol is not None and (
            not self.limits.enable_connect_protocol or method != b"CONNECT"
        ):
            raise ResetStream(wire.PROTOCOL_ERROR, ":protocol without an extended CONNECT")
        if method == b"CONNECT" and protocol is None:
            if b":scheme" in seen or b":path" in seen or not seen.get(b":authority"):
                raise ResetStream(wire.PROTOCOL_ERROR, "CONNECT takes :authority alone")
            target = seen[b":authority"]
        else:
            if not seen.get(b":scheme") or not seen.get(b":path"):
                raise ResetStream(wire.PROTOCOL_ERROR, "no :scheme or :path")
            target = seen[b":path"]
            if not (target.startswith(b"/") or target == b"*"):
                raise ResetStream(wire.PROTOCOL_ERROR, ":path must be absolute or *")
        lengths = {value for name, value in headers if name == b"content-length"}
        if len(lengths) > 1:
            raise ResetStream(wire.PROTOCOL_ERROR, "content-length given twice, differently")
        request = Request(method, target, "2", headers)
        request.pseudo = pseudo
        request.protocol = protocol
        size = sum(len(name) + len(value) + 32 for name, value in fields)
        request.too_large = size > self.limits.max_head
        return request

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise GoAway(wire.FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise GoAway(wire.PROTOCOL_ERROR, "a window increment of 0")
            self.send_window += increment
            if self.send_window > wire.MAX_WINDOW:
                raise GoAway(wire.FLOW_CONTROL_ERROR, "the window past 2^31-1")
            blocked, self.blocked = self.blocked, set()
            for waiting in blocked:
                waiting.wake()
            return
        if stream_id > self.last_stream:
            raise GoAway(wire.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle {stream_id}")
        if not increment:
            raise ResetStream(wire.PROTOCOL_ERROR, "a window increment of 0")
        stream = self.streams.get(stream_id)
        if stream is None:
            return  # a stream that closed meanwhile
        stream.send_window += increment
        if stream.send_window > wire.MAX_WINDOW:
            raise ResetStream(wire.FLOW_CONTROL_ERROR, "the stream's window past 2^31-1")
        stream.wake()

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise GoAway(wire.FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes")
        if stream_id == 0 or stream_id > self.last_stream:
            raise GoAway(wire.PROTOCOL_ERROR, f"RST_STREAM on stream {stream_id}")
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        exchange = stream.exchange
        if exchange is None or not stream.local_ended:
            self._spend_reset()  # work started for nothing: rapid reset's cost
        self._drop(stream, f"reset by the client ({int.from_bytes(payload, 'big')})")

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise GoAway(wire.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & wire.ACK:
            if payload:
                raise GoAway(wire.FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise GoAway(wire.FRAME_SIZE_ERROR, "SETTINGS not in 6-byte pairs")
        self._spend_idle()
        self._apply_settings(payload)
        self.writer.write(wire.frame(wire.SETTINGS, wire.ACK, 0))

    def _apply_settings(self, payload: bytes) -> None:
        for key, value in wire.parse_settings(payload):
            if key == wire.ENABLE_PUSH and value > 1:
                raise GoAway(wire.PROTOCOL_ERROR, "ENABLE_PUSH neither 0 nor 1")
            if key == wire.INITIAL_WINDOW_SIZE:
                if value > wire.MAX_WINDOW:
                    raise GoAway(wire.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too big")
                delta, self.peer_window = value - self.peer_window, value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > wire.MAX_WINDOW:
                        raise GoAway(wire.FLOW_CONTROL_ERROR, "a window past 2^31-1")
                    stream.wake()
            elif key == wire.MAX_FRAME_SIZE:
                if not wire.DEFAULT_FRAME_SIZE <= value <= wire.MAX_FRAME_SIZE_LIMIT:
                    raise GoAway(wire.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_max_frame = value
            elif key == wire.ENABLE_CONNECT_PROTOCOL and value > 1:
                raise GoAway(wire.PROTOCOL_ERROR, "ENABLE_CONNECT_PROTOCOL not 0 or 1")

    def _ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise GoAway(wire.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise GoAway(wire.FRAME_SIZE_ERROR, "PING not 8 bytes")
        if flags & wire.ACK:
            return
        self._spend_idle()
        self.writer.write(wire.frame(wire.PING, wire.ACK, 0, payload))

    def _priority(self, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise GoAway(wire.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise ResetStream(wire.FRAME_SIZE_ERROR, "PRIORITY not 5 bytes")
        self._spend_idle()
        if int.from_bytes(payload[:4], "big") & 0x7FFFFFFF == stream_id:
            raise ResetStream(wire.PROTOCOL_ERROR, "a stream may not depend on itself")

    def _spend_reset(self) -> None:
        if not self.resets.allow(""):
            raise GoAway(wire.ENHANCE_YOUR_CALM, "streams reset faster than served")

    def _spend_idle(self) -> None:
        if not self.idle_frames.allow(""):
            raise GoAway(wire.ENHANCE_YOUR_CALM, "frames that do nothing, too many")
        if self.writer.size > CONTROL_BACKLOG:
            raise GoAway(wire.ENHANCE_YOUR_CALM, "answers to control frames unread")

    # -- streams ------------------------------------------------------------------------

    def _start_upgraded(self, request: Request, body: bytes) -> None:
        """Stream 1, from the HTTP/1.1 request that asked for the upgrade (RFC 7540 3.2)."""
        self.last_stream = 1
        stream = Stream(1, self.peer_window, self.limits.window)
        if body:
            stream.inbox.append(body)
            stream.consumed = -len(body)  # never counted against a window: nothing to give back
        stream.received = len(body)
        self.streams[1] = stream
        stream.ended = True
        request.stream_id = 1
        self._start(stream, request)

    def _start(self, stream: Stream, request: Request) -> None:
        self.requests += 1
        exchange = H2Exchange(self.conn, request, self.requests, self, stream)
        stream.exchange = exchange
        stream.job = self.workers.start(functools.partial(self._run, stream, exchange))

    def _run(self, stream: Stream, exchange: H2Exchange) -> None:
        started = time.monotonic()
        try:
            run_exchange(exchange, self.application, self.limits.max_head, self._fail)
        finally:
            self.finished(exchange, time.monotonic() - started)
            if not stream.local_ended and stream.reset is None:
                self._reset(stream, wire.CANCEL, "the answer was cut short")
            if exchange.close:
                self._go_away()
            self._retire(stream)
            # The stream, its exchange and its job refer to each other: untied here, they
            # go when the last reference does, not at the next collection of cycles.
            stream.exchange = stream.job = None

    def _fail(self, stream: Stream, why: str) -> None:
        self._reset(stream, wire.INTERNAL_ERROR, why)

    def _retire(self, stream: Stream) -> None:
        """The stream's greenlet is done: it no longer counts as open."""
        if self.streams.get(stream.id) is stream and (stream.ended or stream.reset is not None):
            self._close(stream)
        elif self.streams.get(stream.id) is stream:
            # Answered while the client still sends: what it sends is dropped, and the
            # stream closed now (RFC 9113 8.1: RST_STREAM with NO_ERROR).
            self._reset(stream, wire.NO_ERROR, "answered before the request ended")
        if self.going_away and not self.streams:
            self._wake_reader()

    def _wake_reader(self) -> None:
        """The last stream of a connection going away is done: the reader's wait ends."""
        reader = self.reader
        if reader is not None and reader is not gevent.getcurrent() and not reader.dead:
            reader.kill(Drained, block=False)

    def _close(self, stream: Stream) -> None:
        if self.streams.pop(stream.id, None) is not None and stream.reset is None:
            _remember(self.closed_ids, stream.id)
        self.blocked.discard(stream)
        self._give_back(stream)

    def _give_back(self, stream: Stream) -> None:
        """A closed stream's unread body: the connection's window is credited for it."""
        unread = sum(len(piece) for piece in stream.inbox)
        stream.inbox.clear()
        if unread:
            self._credit(None, unread)

    def _reset(self, stream: Stream, code: int | None, why: str) -> None:
        """End ``stream`` from this side: RST_STREAM with ``code`` (None: nothing sent)."""
        if code is not None and stream.reset is None and not (stream.local_ended and stream.ended):
            self._send_reset(stream.id, code)
        self._drop(stream, why)

    def _send_reset(self, stream_id: int, code: int) -> None:
        self.writer.write(wire.rst_stream(stream_id, code))
        _remember(self.reset_by_us, stream_id)

    def _drop(self, stream: Stream, why: str) -> None:
        if stream.reset is None:
            stream.reset = why
        self._close(stream)
        stream.wake()
        job = stream.job
        if job is not None and job.worker is not gevent.getcurrent():
            job.interrupt(StreamGone(why))

    def _credit(self, stream: Stream | None, size: int) -> None:
        """``size`` bytes read (or dropped): given back to the peer once half a window is."""
        self.consumed += size
        if self.consumed >= self.limits.connection_window // 2:
            self.writer.write(wire.window_update(0, self.consumed))
            self.recv_window += self.consumed
            self.consumed = 0
        if stream is not None and not stream.ended:
            stream.consumed += size
            if stream.consumed >= self.limits.window // 2:
                self.writer.write(wire.window_update(stream.id, stream.consumed))
                stream.recv_window += stream.consumed
                stream.consumed = 0

    # -- what the streams' greenlets call ---------------------------------------------------

    def send_data(self, stream: Stream, head: bytes, data: bytes | memoryview, end: bool) -> None:
        """Queue ``head`` (frames already made), then ``data`` as DATA frames as the windows
        allow (END_STREAM on the last if ``end``), waiting for window and for the writer."""
        view = memoryview(data)
        writer = self.writer
        while True:
            if stream.reset is not None:
                raise StreamGone(stream.reset)
            if writer.failed is not None:
                raise writer.failed
            if not view:
                if head or end:
                    flags = wire.END_STREAM if end else 0
                    writer.write(head + wire.frame(wire.DATA, flags, stream.id) if end else head)
                break
            size = min(len(view), stream.send_window, self.send_window, self.peer_max_frame)
            if size <= 0:
                if head:
                    writer.write(head)
                    head = b""
                self._await_window(stream)
                continue
            last = size == len(view)
            flags = wire.END_STREAM if end and last else 0
            stream.send_window -= size
            self.send_window -= size
            writer.write(head + wire.frame(wire.DATA, flags, stream.id, view[:size]))
            head = b""
            view = view[size:]
            if last:
                break
            if writer.size > WRITE_BACKLOG:
                writer.room.wait()
        if end:
            self._local_end(stream)

    def send_headers(self, stream: Stream, block: bytes, end: bool) -> None:
        if stream.reset is not None:
            raise StreamGone(stream.reset)
        flags = wire.END_HEADERS | (wire.END_STREAM if end else 0)
        self.writer.write(self.header_frames(stream.id, block, flags))
        if end:
            self._local_end(stream)

    def header_frames(self, stream_id: int, block: bytes, flags: int) -> bytes:
        """HEADERS (and CONTINUATION when the block is past the peer's frame size)."""
        most = self.peer_max_frame
        if len(block) <= most:
            return wire.frame(wire.HEADERS, flags, stream_id, block)
        pieces = [block[at : at + most] for at in range(0, len(block), most)]
        first = wire.frame(wire.HEADERS, flags & ~wire.END_HEADERS, stream_id, pieces[0])
        rest = [wire.frame(wire.CONTINUATION, 0, stream_id, piece) for piece in pieces[1:-1]]
        last = wire.frame(wire.CONTINUATION, wire.END_HEADERS, stream_id, pieces[-1])
        return b"".join((first, *rest, last))

    def _local_end(self, stream: Stream) -> None:
        stream.local_ended = True

    def _await_window(self, stream: Stream) -> None:
        """Wait for the peer's window, at most the stall bound; then the stream is reset."""
        if self.send_window <= 0:
            self.blocked.add(stream)
        if not stream.wait(self.limits.stall) and stream.reset is None:
            self._reset(stream, wire.CANCEL, "no window granted")
            raise StreamGone("no window granted")

    def body(self, stream: Stream, exchange: H2Exchange) -> Iterator[bytes]:
        """The stream's body as it arrives, each piece credited back as it is taken."""
        while piece := self.next_piece(stream, exchange):
            yield piece

    def next_piece(self, stream: Stream, exchange: H2Exchange) -> bytes:
        """The stream's next piece of body, waiting for it (credited back as it is taken);
        ``b""`` once the peer has ended the stream. A tunnel's wait is interrupted once by
        a stopping server (:class:`Drained`); it may read on after that."""
        while (piece := stream.take(self.going_away)) is None:
            stream.wait()
        if piece:
            exchange.received += len(piece)
            if stream.consumed >= 0:
                self._credit(stream, len(piece))
            else:
                stream.consumed += len(piece)
        return piece


class H2Exchange(Exchange):
    """A stream's request and its response: HEADERS, DATA, trailers, under flow control."""

    __slots__ = ("_block", "_h2", "_no_body", "sent_head", "stream")

    def __init__(
        self, conn: Connection, request: Request, number: int, h2: H2Connection, stream: Stream
    ) -> None:
        super().__init__(conn, request, number)
        self._h2 = h2
        self.stream = stream
        #: The response's header block, held until the first piece of the body (or its end).
        self._block: bytes | None = None
        self._no_body = False
        self.sent_head = False

    def body(self) -> Iterator[bytes]:
        return self._h2.body(self.stream, self)

    def respond(
        self, status: int, headers: list[Header], length: int | None = None, date: bool = True
    ) -> None:
        self.status = status
        encode = wire.encode_field
        parts = [encode(b":status", b"%d" % status)]
        parts += [encode(name.lower(), value) for name, value in headers]
        if length is not None and not (bodiless(status) and status != 304):
            parts.append(encode(b"content-length", b"%d" % length))
        if date:
            parts.append(encode(b"date", http_date()))
        if self._h2.alt_svc is not None:
            parts.append(encode(b"alt-svc", self._h2.alt_svc))
        self._no_body = self.request.method == b"HEAD" or bodiless(status)
        self._block = b"".join(parts)

    def _head(self, end: bool) -> bytes:
        block = self._block
        if block is None:
            return b""
        self._block = None
        self.sent_head = True
        flags = wire.END_HEADERS | (wire.END_STREAM if end else 0)
        return self._h2.header_frames(self.stream.id, block, flags)

    def send(self, data: bytes | memoryview) -> None:
        if self._no_body or not data or self.stream.local_ended:
            return
        self._h2.send_data(self.stream, self._head(False), data, False)

    def end(self, trailers: list[Header] | None = None) -> None:
        stream = self.stream
        if stream.local_ended or stream.reset is not None:
            return
        if self.status == 0:
            raise HttpError(500, "the server gave no answer")
        h2 = self._h2
        if trailers and not self._no_body:
            head = self._head(False)
            block = b"".join(wire.encode_field(name.lower(), value) for name, value in trailers)
            flags = wire.END_HEADERS | wire.END_STREAM
            h2.writer.write(head + h2.header_frames(stream.id, block, flags))
            h2._local_end(stream)
        elif self._block is not None:
            h2.writer.write(self._head(True))
            h2._local_end(stream)
        else:
            h2.send_data(stream, b"", b"", True)

    def answer(
        self, status: int, headers: list[Header], body: bytes | memoryview, date: bool = True
    ) -> None:
        self.respond(status, headers, len(body), date)
        if self._no_body or not body:
            return self.end()
        self._h2.send_data(self.stream, self._head(False), body, True)

    def tunnel(self, status: int, headers: list[Header]) -> StreamTunnel:
        self.respond(status, headers)
        self._h2.writer.write(self._head(False))
        self.stream.tunnel = True
        self.tunnelled = True
        return StreamTunnel(self)

    # What a tunnel reads and writes (CONNECT, RFC 9113 8.5; the extended CONNECT, RFC 8441).

    def read_piece(self) -> bytes:
        return self._h2.next_piece(self.stream, self)

    def write_piece(self, data: bytes, end: bool) -> None:
        self._h2.send_data(self.stream, b"", data, end)


def _unpad(flags: int, payload: bytes, kind: str) -> bytes:
    """A frame's payload without its padding (RFC 9113 6.1); a connection error if the
    padding is longer than the frame."""
    if not flags & wire.PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise GoAway(wire.PROTOCOL_ERROR, f"{kind} padding past the frame")
    return payload[1 : len(payload) - payload[0]]


#: A field name as RFC 9113 8.2.1 allows it: no controls, space, upper case, DEL, bytes
#: past ASCII, nor a colon (pseudo-headers are sorted out before).
FIELD_NAME = re.compile(rb"[^\x00-\x20\x41-\x5a\x7f-\xff:]+")
#: What a field value may not hold (RFC 9113 8.2.1): NUL, CR, LF, or whitespace at an end.
BAD_VALUE = re.compile(rb"[\0\r\n]|\A[ \t]|[ \t]\Z")


def _check_fields(fields: list[Header]) -> None:
    """Field names and values as RFC 9113 8.2 allows them; a stream error otherwise."""
    name_ok, bad_value = FIELD_NAME.fullmatch, BAD_VALUE.search
    for name, value in fields:
        if not name_ok(name):
            raise ResetStream(wire.PROTOCOL_ERROR, f"field name {name!r}")
        if name in CONNECTION_FIELDS or (name == b"te" and value != b"trailers"):
            raise ResetStream(wire.PROTOCOL_ERROR, f"connection-specific field {name!r}")
        if bad_value(value):
            raise ResetStream(wire.PROTOCOL_ERROR, f"the value of {name!r}")
        if name == b"content-length" and not value.isdigit():
            raise ResetStream(wire.PROTOCOL_ERROR, "content-length not a number")


def _remember(ids: dict[int, None], stream_id: int, most: int = 1024) -> None:
    """Add ``stream_id`` to ``ids``, an ordered set that forgets its oldest past ``most``."""
    ids[stream_id] = None
    if len(ids) > most:
        del ids[next(iter(ids))]
