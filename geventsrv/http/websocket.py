"""The http mode's WebSocket echo (RFC 6455, with permessage-deflate, RFC 7692).

A request on any path that asks for a WebSocket gets one, after the same
prologue (PROXY header, TLS, limits) as any request: in HTTP/1.1 by
``Upgrade: websocket`` (RFC 6455), the connection switched; in HTTP/2 by an
extended CONNECT with ``:protocol websocket`` (RFC 8441, offered in the
server's SETTINGS), the stream becoming the WebSocket beside the connection's
other streams. From then on the greenlet runs another blocking-style loop over
the exchange's tunnel (:meth:`~geventsrv.http.exchange.Exchange.tunnel`: the
connection itself in HTTP/1.1, the stream's DATA in HTTP/2): ``recv()``, feed wsproto (sans-IO, like
llhttp: it never touches the socket), act on its events, ``sendall()``.

What it does, as an echo server should:

* every message back whole, with its opcode (text or binary), fragments
  reassembled; no greeting. With ``?reflect=1`` on the upgrade's URL the first
  message sent is the reflection of the upgrade request (the HTTP mode's
  schema), so a client sees what a proxy forwarded;
* ping answered with pong; the client's close code and reason echoed in the
  closing handshake;
* the subprotocol: the first one the client offers is accepted (a browser
  fails the connection when ``Sec-WebSocket-Protocol`` goes unanswered);
* permessage-deflate, when offered.

Bounded, since the peer controls it all: a message (fragments together,
decompressed) at most ``--ws-max-message`` bytes, else close 1009; what a
compressed read may inflate to, the same (a deflate bomb is cut at the
bound, not after); invalid UTF-8 in text (split code points included) closes
1007, any other protocol error 1002, both judged by wsproto. Nothing is
queued: each reply is sent before the next read, so a client that never reads
stalls only its own connection, which the idle timeout then closes. On
shutdown an open WebSocket gets close 1001 and a moment for the client's
close, within the drain timeout.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gevent
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token, split_comma_header

from geventsrv.connection import RECV_SIZE, Drained
from geventsrv.http.controls import is_token
from geventsrv.http.exchange import Header, HttpError

if TYPE_CHECKING:
    from geventsrv.connection import Connection
    from geventsrv.http.exchange import Exchange, Request, Tunnel

access_log = logging.getLogger("geventsrv.access")
#: Seconds the server waits for the client's close after sending its own.
CLOSE_WAIT = 2.0
#: Close codes counted by number in the metrics; the rest (3000-4999, chosen by
#: applications) as "other", so a client cannot grow the label set.
NAMED_CLOSES = frozenset((1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011))


TEXT_OPCODE, BINARY_OPCODE, PING_OPCODE, PONG_OPCODE = 0x1, 0x2, 0x9, 0xA
FAST_OPCODES = frozenset((TEXT_OPCODE, BINARY_OPCODE, PING_OPCODE, PONG_OPCODE))


def unmask(payload: bytes, key: bytes) -> bytes:
    """A client frame's payload, unmasked (RFC 6455 5.3), as one big-integer XOR."""
    size = len(payload)
    if not size:
        return b""
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")


def frame_head(opcode: int, size: int) -> bytes:
    """The head of a final, unmasked frame (the server's) of ``size`` bytes."""
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 1 << 16:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")


def wants_websocket(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket (judged further by the handshake): an
    HTTP/1.1 upgrade, or HTTP/2's extended CONNECT (RFC 8441)."""
    return request.upgrade == b"websocket" or request.protocol == b"websocket"


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflating stops at ``most`` bytes per read.

    wsproto inflates a frame's payload whole; a few KiB of zeros inflate to
    megabytes. Here what one call may produce is capped just past the
    message bound, and a payload that would inflate further is refused as too
    big (1009) before the memory is spent. (It uses wsproto's decompressor
    state, ``_inbound_compressed`` and ``_decompressor``, as of wsproto 1.3.)
    """

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        try:
            inflated = self._decompressor.decompress(bytes(data), self.most + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self._decompressor.unconsumed_tail or len(inflated) > self.most:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated


class WebSocketEcho:
    """The echo, and what it has counted (messages by type, closes by code)."""

    def __init__(self, max_message: int, log_each: bool) -> None:
        self.max_message = max_message
        self.log_each = log_each
        self.messages = {"text": 0, "binary": 0}
        self.closes: dict[str, int] = {}

    def handshake(self, request: Request) -> tuple[list[Header], list[PerMessageDeflate]]:
        """The headers that accept the WebSocket (101 or 200) and the extensions agreed,
        or :class:`HttpError`."""
        try:
            return self._handshake(request)
        except (UnicodeDecodeError, ValueError) as exc:  # bytes past ASCII, bad parameters
            raise HttpError(400, f"a bad Sec-WebSocket header: {str(exc)[:100]}") from None

    def _handshake(self, request: Request) -> tuple[list[Header], list[PerMessageDeflate]]:
        fields = {}
        offers: list[str] = []
        protocols: list[str] = []
        connection_tokens: list[str] = []
        for name, value in request.headers:
            lower = name.lower()
            fields[lower] = value
            if lower == b"sec-websocket-extensions":
                offers += split_comma_header(value)
            elif lower == b"sec-websocket-protocol":
                protocols += [p for p in split_comma_header(value) if is_token(p)]
            elif lower == b"connection":
                connection_tokens += [t.lower() for t in split_comma_header(value)]
        if request.protocol is not None:  # HTTP/2's extended CONNECT (RFC 8441 4, 5)
            if fields.get(b"sec-websocket-version") != b"13":
                raise HttpError(
                    400, "only WebSocket version 13 is served", [(b"sec-websocket-version", b"13")]
                )
            headers: list[Header] = []
        else:
            headers = self._upgrade(request, fields, connection_tokens)
        if protocols:
            headers.append((b"Sec-WebSocket-Protocol", protocols[0].encode("latin-1")))
        deflate = BoundedDeflate(self.max_message)
        agreed = server_extensions_handshake(offers, [deflate]) if offers else None
        if agreed:
            headers.append((b"Sec-WebSocket-Extensions", agreed))
        return headers, [deflate] if agreed else []

    @staticmethod
    def _upgrade(
        request: Request, fields: dict[bytes, bytes], connection_tokens: list[str]
    ) -> list[Header]:
        """HTTP/1.1's side of the handshake (RFC 6455 4.2): the 101's own headers."""
        if request.method != b"GET" or request.version != "1.1":
            raise HttpError(400, "a WebSocket upgrade is an HTTP/1.1 GET")
        if "upgrade" not in connection_tokens:
            raise HttpError(400, "a WebSocket upgrade needs Connection: Upgrade")
        if fields.get(b"sec-websocket-version") != b"13":
            raise HttpError(  # RFC 6455 4.4: the refusal names the versions served
                426, "only WebSocket version 13 is served", [(b"Sec-WebSocket-Version", b"13")]
            )
        key = fields.get(b"sec-websocket-key", b"")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            raise HttpError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
        return [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", generate_accept_token(key)),
        ]

    def serve(
        self,
        exchange: Exchange,
        headers: list[Header],
        extensions: list[PerMessageDeflate],
        first: bytes | None,
    ) -> int:
        """Switch (``headers``: the handshake's; 101 in HTTP/1.1, 200 to HTTP/2's extended
        CONNECT), then echo until either side closes; the close code the client saw.
        ``first``: a message to send before any echo."""
        started = time.monotonic()
        conn = exchange.conn
        tunnel = exchange.tunnel(200 if exchange.request.protocol else 101, headers)
        ws = WsConnection(ConnectionType.SERVER, extensions=list(extensions))
        session = Session(self, conn, tunnel, ws, fast=not extensions)
        code = int(CloseReason.ABNORMAL_CLOSURE)  # unless a closing handshake says otherwise
        try:
            code = session.run(first)
        finally:  # a reset or the idle timeout too: counted and logged, then passed on
            self.record(exchange, session, code, time.monotonic() - started)
        return code

    def record(self, exchange: Exchange, session: Session, code: int, seconds: float) -> None:
        """Count one closed WebSocket by its code, and log it with ``--access-log``."""
        label = str(code) if code in NAMED_CLOSES else "other"
        self.closes[label] = self.closes.get(label, 0) + 1
        if self.log_each:
            conn, request = exchange.conn, exchange.request
            shown = request.target.decode("latin-1")[:200]
            access_log.info(
                "%s: WebSocket %s, HTTP/%s, %d message(s) in, %d out, close %d, %.3f s",
                conn.client, shown, request.version, session.received, session.sent, code,
                seconds,
                extra={"client": conn.client, "method": request.method.decode("latin-1"),
                       "target": shown, "status": exchange.status,
                       "websocket_messages_in": session.received,
                       "websocket_messages_out": session.sent, "close_code": code,
                       "duration": round(seconds, 6)},
            )  # fmt: skip

    def collect_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        messages = CounterMetricFamily(
            "geventsrv_websocket_messages",
            "WebSocket messages echoed, by type.",
            labels=["type"],
        )
        for kind, count in sorted(self.messages.items()):
            messages.add_metric([kind], count)
        yield messages
        closes = CounterMetricFamily(
            "geventsrv_websocket_closes",
            "WebSocket connections closed, by the close code (other: 3000-4999).",
            labels=["code"],
        )
        for code, count in sorted(self.closes.items()):
            closes.add_metric([code], count)
        yield closes


class Session:
    """One WebSocket: the loop that reads, feeds wsproto and answers."""

    def __init__(
        self, echo: WebSocketEcho, conn: Connection, tunnel: Tunnel, ws: WsConnection, fast: bool
    ) -> None:
        self.echo = echo
        self.conn = conn
        self.tunnel = tunnel
        self.ws = ws
        self.received = 0
        self.sent = 0
        #: The message being reassembled, and its size so far.
        self.parts: list[Any] = []
        self.size = 0
        #: The close code, once the closing handshake has begun (ours or theirs).
        self.code: int | None = None
        #: While true, whole plain frames are echoed by :meth:`echo_whole_frames`
        #: without wsproto; the first frame it does not take hands the stream to
        #: wsproto for good. Not with an extension (compression): wsproto's then.
        self.fast = fast
        #: The start of a frame whose end has not arrived (fast path only), in pieces,
        #: and how many bytes the whole frame takes once its head is known.
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.frame_size = 0

    def run(self, first: bytes | None) -> int:
        ws = self.ws
        if first is not None:
            self.send(TextMessage(data=first.decode()))
        data: bytes | None = b""
        while True:
            if data is None:
                ws.receive_data(None)  # gone without a close frame: 1006
            elif data:
                if self.fast:
                    data = self.echo_whole_frames(data)
                if data:
                    ws.receive_data(data)
            for event in ws.events():
                self.act(event)
            if ws.state is ConnectionState.CLOSED:
                return self.code or int(CloseReason.ABNORMAL_CLOSURE)
            if ws.state is ConnectionState.LOCAL_CLOSING:
                return self.await_their_close()
            if self.conn.draining:
                self.close(CloseReason.GOING_AWAY, "server shutting down")
                data = b""
                continue
            data = self.read()

    def echo_whole_frames(self, data: bytes) -> bytes:
        """Echo the complete, final, masked text, binary and ping frames at the start of
        ``data`` (and of what was pending) the way wsproto would, without it: most
        messages are one such frame, and wsproto's general parser is most of their cost.
        Returns what is left for wsproto, ``b""`` if nothing: at the first frame this path
        does not take (a fragment, a close, reserved bits, bad UTF-8, over the bound), the
        rest of the stream goes to wsproto, which judges it as RFC 6455 says."""
        if self.pending:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size < self.frame_size:  # still not whole: no copy yet
                return b""
            buffer = b"".join(self.pending)
            self.pending, self.pending_size, self.frame_size = [], 0, 0
        else:
            buffer = data
        position, end = 0, len(buffer)
        most = self.echo.max_message
        while end - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            opcode = first & 0x0F
            if first & 0x70 or not first & 0x80 or not second & 0x80 or opcode not in FAST_OPCODES:
                break  # reserved bits, a fragment, unmasked, or another opcode: wsproto's
            size, head = second & 0x7F, 6
            if size == 126:
                if end - position < 4:
                    return self.keep(buffer[position:], 0)
                size, head = int.from_bytes(buffer[position + 2 : position + 4], "big"), 8
                shortest = 126
            elif size == 127:
                if end - position < 10:
                    return self.keep(buffer[position:], 0)
                size, head = int.from_bytes(buffer[position + 2 : position + 10], "big"), 14
                shortest = 1 << 16
            else:
                shortest = 0
            # A length in more bytes than it needs (RFC 6455 5.2 forbids it) is wsproto's
            # to refuse, as are control frames over 125 bytes and messages over the bound.
            if size < shortest or size > most or (opcode >= 8 and size > 125):
                break
            if end - position < head + size:  # the rest of it has not arrived
                return self.keep(buffer[position:], head + size)
            start = position + head
            payload = unmask(buffer[start : start + size], buffer[start - 4 : start])
            if opcode == TEXT_OPCODE:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # wsproto closes with 1007
            position = start + size
            if opcode == PONG_OPCODE:
                continue
            reply = PONG_OPCODE if opcode == PING_OPCODE else opcode
            self.write(frame_head(reply, size) + payload)
            if opcode != PING_OPCODE:
                self.received += 1
                self.sent += 1
                self.echo.messages["text" if opcode == TEXT_OPCODE else "binary"] += 1
        else:
            return self.keep(buffer[position:], 0)
        self.fast = False
        return buffer[position:]

    def keep(self, start: bytes, frame_size: int) -> bytes:
        """Hold the start of a frame until the rest arrives; ``b""``: nothing for wsproto."""
        if start:
            self.pending, self.pending_size, self.frame_size = [start], len(start), frame_size
        return b""

    def read(self) -> bytes | None:
        """What the client sent next (``None``: it closed); ``b""`` when the server stops."""
        try:
            data = self.tunnel.recv(RECV_SIZE)
        except Drained:  # the tunnel's wait, interrupted by a stopping server
            self.conn.draining = True
            return b""
        return data or None

    def act(self, event: Any) -> None:
        ws = self.ws
        if isinstance(event, Message):
            data = event.data
            # The bound is in bytes, as RFC 6455 measures a payload: a text piece counts
            # its UTF-8 length (isascii() is free for a str, encode() is not).
            self.size += len(data) if type(data) is bytes or data.isascii() else len(data.encode())
            if self.size > self.echo.max_message:
                self.close(CloseReason.MESSAGE_TOO_BIG, "message too big")
                return
            self.parts.append(event.data)
            if event.message_finished:
                self.received += 1
                if isinstance(event, TextMessage):
                    self.echo.messages["text"] += 1
                    self.send(TextMessage(data="".join(self.parts)))
                else:
                    self.echo.messages["binary"] += 1
                    self.send(BytesMessage(data=b"".join(self.parts)))
                self.parts, self.size = [], 0
        elif isinstance(event, Ping):
            self.write(ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if ws.state is ConnectionState.REMOTE_CLOSING:  # the client closed: echo its close
                self.code = int(event.code)
                self.write(ws.send(event.response()))
            elif ws.state is ConnectionState.OPEN:  # wsproto found an error: fail with its code
                self.close(int(event.code), event.reason or "")
            else:  # their answer to our close
                self.code = self.code or int(event.code)

    def send(self, message: Message[Any]) -> None:
        self.write(self.ws.send(message))
        self.sent += 1

    def write(self, data: bytes) -> None:
        """Send ``data`` to the client."""
        self.tunnel.sendall(data)

    def close(self, code: int, reason: str) -> None:
        """Begin the closing handshake with ``code`` (the first one wins)."""
        if self.ws.state is ConnectionState.OPEN:
            self.code = code
            self.write(self.ws.send(CloseConnection(code=code, reason=reason[:100])))

    def await_their_close(self) -> int:
        """After our close: half-close (the server ends the TCP connection, as RFC 6455
        7.1.1 asks), then read and drop until the client's close or end, for a moment."""
        assert self.code is not None
        with contextlib.suppress(OSError):
            self.tunnel.shutdown_write()
        with (
            contextlib.suppress(OSError, Drained),
            gevent.Timeout(CLOSE_WAIT, False),  # type: ignore[arg-type]
        ):
            while self.ws.state is not ConnectionState.CLOSED:
                data = self.tunnel.recv(RECV_SIZE)
                if not data:
                    break
                self.ws.receive_data(data)
                for _ in self.ws.events():  # all but their close are dropped now
                    pass
        return self.code
