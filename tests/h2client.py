"""HTTP/2 clients for the tests: frames built and read byte by byte (for what no library
would send: bad frames, floods, resets), and the ``h2`` library's client (what a real
client does). The frame layout is written out here from RFC 9113, not taken from the
server's own code."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import hpack
from support import CLIENT_TIMEOUT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x0, 0x1, 0x3, 0x5
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB
MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x3, 0x4, 0x5


def frame(kind: int, flags: int = 0, stream: int = 0, payload: bytes = b"") -> bytes:
    """One frame: 24-bit length, type, flags, 31-bit stream, payload (RFC 9113 4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(
        ">I", stream
    ) + payload  # fmt: skip


def settings_payload(**values: int) -> bytes:
    codes = {"header_table_size": 1, "enable_push": 2, "max_concurrent_streams": 3,
             "initial_window_size": 4, "max_frame_size": 5, "max_header_list_size": 6,
             "enable_connect_protocol": 8}  # fmt: skip
    return b"".join(struct.pack(">HI", codes[name], value) for name, value in values.items())


@dataclass
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes

    @property
    def code(self) -> int:
        """The error code of a RST_STREAM or GOAWAY."""
        at = 4 if self.kind == GOAWAY else 0
        return int(struct.unpack_from(">I", self.payload, at)[0])


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class Closed(Exception):
    """The server closed the connection (``frames``: what it sent before)."""


class RawClient:
    """A connection that sends what it is told and reads frames one at a time."""

    def __init__(
        self,
        address: tuple[str, int],
        preface: bytes = PREFACE,
        settings: bytes = b"",
        timeout: float = CLIENT_TIMEOUT,
        sock: Any = None,
    ) -> None:
        self.sock = sock or socket.create_connection(address, timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.seen: list[Frame] = []
        self.outcomes: dict[int, str] = {}
        #: Every byte sent, in order: what another implementation may be fed, to compare.
        self.sent = bytearray()
        if preface:
            self.send(preface + frame(SETTINGS, 0, 0, settings))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *frames: bytes) -> None:
        data = b"".join(frames)
        self.sent += data
        self.sock.sendall(data)

    def block(self, fields: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(fields)

    def request(
        self,
        stream: int,
        path: str = "/",
        method: str = "GET",
        extra: list[tuple[str, str]] | None = None,
        end_stream: bool = True,
    ) -> None:
        fields = [(":method", method), (":scheme", "http"), (":path", path),
                  (":authority", "test"), *(extra or [])]  # fmt: skip
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        self.send(frame(HEADERS, flags, stream, self.block(fields)))

    def next(self) -> Frame:
        """The next frame the server sent; :class:`Closed` at its close (or reset)."""
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3], "big"):
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise Closed(self.seen)
            self.buffer += data
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags = self.buffer[3], self.buffer[4]
        stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
        payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
        seen = Frame(kind, flags, stream, payload)
        self.seen.append(seen)
        return seen

    def until(self, kind: int, stream: int | None = None) -> Frame:
        while True:
            seen = self.next()
            if seen.kind == kind and (stream is None or seen.stream == stream):
                return seen

    def goaway(self) -> int | None:
        """The code of the server's GOAWAY, or None if it closed without one."""
        try:
            return self.until(GOAWAY).code
        except Closed:
            return None

    def outcome(self, stream: int) -> str:
        """What became of ``stream``: ``"response <status>"``, ``"reset <code>"``, or
        ``"goaway <code>"``, ``"closed"``: the first the server said of it (what it said of
        other streams meanwhile is kept for their turn)."""
        outcomes = self.outcomes
        while stream not in outcomes:
            try:
                seen = self.next()
            except Closed:
                return outcomes.get(stream, "closed")
            if seen.kind == GOAWAY:
                return f"goaway {seen.code}"
            if seen.stream in outcomes:
                continue
            if seen.kind == RST_STREAM:
                outcomes[seen.stream] = f"reset {seen.code}"
            elif seen.kind == HEADERS:
                fields = dict(self.decoder.decode(seen.payload, raw=True))
                outcomes[seen.stream] = f"response {int(fields[b':status'])}"
        return outcomes[stream]

    def response(self, stream: int, window_updates: bool = True) -> Response:
        """The whole response of ``stream`` (granting window as the body comes)."""
        status, body = 0, bytearray()
        headers: list[tuple[bytes, bytes]] = []
        trailers: list[tuple[bytes, bytes]] = []
        while True:
            seen = self.next()
            if seen.kind == GOAWAY and seen.code != NO_ERROR:
                raise AssertionError(f"GOAWAY {seen.code}: {seen.payload[8:]!r}")
            if seen.stream != stream:
                continue
            if seen.kind == RST_STREAM:
                raise AssertionError(f"stream {stream} reset: {seen.code}")
            if seen.kind == HEADERS:
                decoded = self.decoder.decode(seen.payload, raw=True)
                fields = [(bytes(name), bytes(value)) for name, value in decoded]
                if status:
                    trailers = fields
                else:
                    status = int(dict(fields)[b":status"])
                    headers = [pair for pair in fields if not pair[0].startswith(b":")]
            elif seen.kind == DATA:
                body += seen.payload
                if window_updates and seen.payload:
                    increment = struct.pack(">I", len(seen.payload))
                    self.send(frame(WINDOW_UPDATE, 0, 0, increment),
                              frame(WINDOW_UPDATE, 0, stream, increment))  # fmt: skip
            if seen.flags & END_STREAM:
                return Response(status, headers, bytes(body), trailers)
