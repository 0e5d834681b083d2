"""WebSocket frames built and read byte by byte, for tests that must send what no library
would (bad opcodes, reserved bits, broken UTF-8, unmasked frames), over HTTP/1.1's upgrade
or over an HTTP/2 stream (RFC 8441's extended CONNECT, the ``h2`` library as the client)."""

from __future__ import annotations

import base64
import os
import socket
import struct
from typing import Any

from support import CLIENT_TIMEOUT

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length_bytes: int | None = None,
) -> bytes:
    """One frame as a client sends it (masked unless ``mask`` is false).

    The length takes the fewest bytes RFC 6455 allows, or ``length_bytes`` (0, 2 or 8
    after the first two) to send one encoded longer than it may be.
    """
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if mask else 0
    size = len(payload)
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 1 << 16 else 8
    if length_bytes == 0:
        head = bytes((first, bit | size))
    elif length_bytes == 2:
        head = bytes((first, bit | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, bit | 127)) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    keyed = (key * (size // 4 + 1))[:size]
    return (
        head
        + key
        + (int.from_bytes(payload, "big") ^ int.from_bytes(keyed, "big")).to_bytes(size, "big")
    )


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class FrameReader:
    """The server's frames (unmasked), read off a socket."""

    def __init__(self, sock: socket.socket | H2WebSocket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed with {len(self.buffer)} of {size} bytes")
            self.buffer += data
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    def next(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame."""
        first, second = self._take(2)
        assert not second & 0x80, "a server's frames are never masked"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._take(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._take(8))
        return bool(first & 0x80), first & 0x0F, self._take(size)

    def close_code(self) -> int | None:
        """Read frames up to the server's close; its code (``None``: no code)."""
        while True:
            _, opcode, payload = self.next()
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else None


def open_websocket(
    address: tuple[str, int], path: str = "/", extra: str = "", version: str = "1.1"
) -> tuple[Any, FrameReader, bytes]:
    """A connected WebSocket (a socket, or a stream with a socket's calls), its reader, and
    the response's head: HTTP/1.1's upgrade, or an HTTP/2 stream's (``version="2"``)."""
    if version == "2":
        stream = H2WebSocket(address, path, extra)
        return stream, FrameReader(stream), stream.head
    sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    reader = FrameReader(sock)
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            raise EOFError(head)
        head += data
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock, reader, head


class H2WebSocket:
    """A WebSocket on an HTTP/2 stream (RFC 8441), opened with the ``h2`` library's client
    over h2c; its bytes are sent and received with a socket's calls (``sendall``,
    ``recv``, ``shutdown``), DATA frames under flow control underneath.

    The library takes a GOAWAY as the end of everything, where RFC 9113 6.8 lets the
    streams it spares finish (a stopping server's WebSocket closes with 1001 after it):
    GOAWAY frames are kept from the library and noted in :attr:`goaway`."""

    def __init__(self, address: tuple[str, int], path: str, extra: str = "") -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.events import RemoteSettingsChanged, ResponseReceived

        self.sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.received = bytearray()
        self.ended = False
        #: Bytes read that do not make a whole frame yet, and the GOAWAY code seen.
        self.partial = b""
        self.goaway: int | None = None
        #: What the server said on the connection's other streams (their events).
        self.others: list[Any] = []
        offered = False
        while not offered:  # RFC 8441 3: only once the server's SETTINGS offers it
            offered = any(isinstance(event, RemoteSettingsChanged) for event in self._read())
        assert self.h2.remote_settings.enable_connect_protocol == 1
        self.stream = self.h2.get_next_available_stream_id()
        fields = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
                  (b":path", path.encode()), (b":authority", b"test"),
                  (b"sec-websocket-version", b"13")]  # fmt: skip
        for line in extra.split("\r\n"):
            if line:
                name, _, value = line.partition(":")
                fields.append((name.strip().lower().encode(), value.strip().encode()))
        self.h2.send_headers(self.stream, fields)
        self.sock.sendall(self.h2.data_to_send())
        response: list[tuple[bytes, bytes]] = []
        while not response:
            for event in self._read():
                if isinstance(event, ResponseReceived):
                    response = list(event.headers)
        self.status = int(dict(response)[b":status"])
        #: The response's fields, shown as an HTTP/1 head for the tests that read one.
        self.head = (
            b"HTTP/2 %d \r\n" % self.status
            + b"".join(b"%s: %s\r\n" % field for field in response if not field[0].startswith(b":"))
            + b"\r\n"
        )
        assert self.status == 200, self.head

    def _read(self) -> list[Any]:
        from h2.events import DataReceived, StreamEnded, StreamReset

        data = self.sock.recv(65536)
        if not data:
            self.ended = True
            return []
        events = self.h2.receive_data(self._without_goaway(data))
        ours = getattr(self, "stream", None)
        for event in events:
            if isinstance(event, DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = getattr(event, "stream_id", None)
            if stream is not None and stream != ours:
                self.others.append(event)
            elif isinstance(event, DataReceived):
                self.received += event.data
            elif isinstance(event, (StreamEnded, StreamReset)):
                self.ended = True
        self.sock.sendall(self.h2.data_to_send())
        return events

    def _without_goaway(self, data: bytes) -> bytes:
        """The whole frames of what has been read, GOAWAY taken out."""
        buffer, kept = self.partial + data, []
        while len(buffer) >= 9:
            end = 9 + int.from_bytes(buffer[:3], "big")
            if len(buffer) < end:
                break
            if buffer[3] == 0x7:
                self.goaway = int.from_bytes(buffer[13:17], "big")
            else:
                kept.append(buffer[:end])
            buffer = buffer[end:]
        self.partial = buffer
        return b"".join(kept)

    def request(self, path: str) -> bytes:
        """A GET on another stream of the same connection, answered meanwhile: its body."""
        from h2.events import DataReceived, StreamEnded

        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"http"),
                                      (b":path", path.encode()), (b":authority", b"test")],
                             end_stream=True)  # fmt: skip
        self.sock.sendall(self.h2.data_to_send())
        body = bytearray()
        while True:
            for event in self.others:
                if getattr(event, "stream_id", None) != stream:
                    continue
                if isinstance(event, DataReceived):
                    body += event.data
                elif isinstance(event, StreamEnded):
                    self.others.clear()
                    return bytes(body)
            self.others = [e for e in self.others if getattr(e, "stream_id", None) != stream]
            self._read()

    def recv(self, size: int) -> bytes:
        while not self.received and not self.ended:
            self._read()
        taken = bytes(self.received[:size])
        del self.received[:size]
        return taken

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # as much as the windows allow, a frame at a time
            size = min(len(view), self.h2.local_flow_control_window(self.stream),
                       self.h2.max_outbound_frame_size)  # fmt: skip
            if not size:
                self._read()  # for the server's WINDOW_UPDATE
                continue
            self.h2.send_data(self.stream, view[:size].tobytes())
            view = view[size:]
            self.sock.sendall(self.h2.data_to_send())

    def shutdown(self, how: int) -> None:
        """The client's side ends (END_STREAM), as a socket's write side would."""
        self.h2.end_stream(self.stream)
        self.sock.sendall(self.h2.data_to_send())

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
