"""WebSocket frames built and read byte by byte, for tests that must send what no library
would (bad opcodes, reserved bits, broken UTF-8, unmasked frames)."""

from __future__ import annotations

import base64
import os
import socket
import struct

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

    def __init__(self, sock: socket.socket) -> None:
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
    address: tuple[str, int], path: str = "/", extra: str = ""
) -> tuple[socket.socket, FrameReader, bytes]:
    """A connected, upgraded socket, its reader, and the 101 response's head."""
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
