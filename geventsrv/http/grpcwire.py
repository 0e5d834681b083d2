"""gRPC's wire, as far as an echo needs it: length-prefixed messages, and protobuf's fields.

A gRPC message on the wire (the gRPC over HTTP/2 protocol) is a 1-byte
compressed flag, a 4-byte big-endian length, and the message; a request's
body is any number of them, cut anywhere by DATA frames. :class:`MessageReader`
takes the body's pieces and gives whole messages, bounded and decompressed.

Messages are protobuf, and the echo passes them through as bytes; the few the
server makes itself (the reflection, health, a generated payload) have one or
two fields, written with :func:`field` and read with :func:`fields`. No
protobuf runtime is needed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

#: gRPC status codes (``grpc-status``), by name.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 7, 8, 12, 13, 14
STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip
#: The message encodings served (``grpc-encoding``), besides identity.
ENCODINGS = ("gzip", "deflate")
#: A timeout's unit (``grpc-timeout``), in seconds.
TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class CallError(Exception):
    """The call ends with ``code`` and ``message`` in its trailers (its stream alone)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_timeout(value: bytes) -> float:
    """``grpc-timeout``'s seconds: at most 8 digits and a unit; ``ValueError`` otherwise."""
    digits, unit = value[:-1], value[-1:].decode("latin-1")
    if not 1 <= len(digits) <= 8 or not digits.isdigit() or unit not in TIMEOUT_UNITS:
        raise ValueError(f"grpc-timeout {value[:20]!r}")
    return int(digits) * TIMEOUT_UNITS[unit]


def percent_encoded(message: str) -> bytes:
    """``grpc-message``'s form: UTF-8, with bytes outside printable ASCII and ``%``
    percent-encoded."""
    return b"".join(
        bytes((byte,)) if 0x20 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte
        for byte in message.encode("utf-8", "replace")
    )


def framed(message: bytes, encoding: str | None = None) -> bytes:
    """One message on the wire: flag, length, bytes (compressed with ``encoding``)."""
    if encoding is None:
        return b"\0" + len(message).to_bytes(4, "big") + message
    packed = _compress(message, encoding)
    return b"\1" + len(packed).to_bytes(4, "big") + packed


def _compress(data: bytes, encoding: str) -> bytes:
    """``data`` in gRPC's ``gzip`` or ``deflate`` (zlib's) format."""
    packer = zlib.compressobj(6, zlib.DEFLATED, _WBITS[encoding])
    return packer.compress(data) + packer.flush()


#: zlib's window bits for each encoding: gzip's header, or zlib's.
_WBITS = {"gzip": 31, "deflate": 15}


class MessageReader:
    """Whole messages from a body's pieces: each at most ``most`` bytes (compressed and
    decompressed), else RESOURCE_EXHAUSTED; a compressed one only where ``encoding``
    names how (INTERNAL otherwise, as gRPC's own servers answer)."""

    def __init__(self, pieces: Iterable[bytes], most: int, encoding: str | None) -> None:
        self.pieces = iter(pieces)
        self.most = most
        self.encoding = encoding
        self.buffer = bytearray()
        #: Messages taken so far.
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        buffer = self.buffer
        if not buffer:  # most pieces hold whole messages: taken without a copy into the buffer
            piece = next(self.pieces, None)
            if piece is None:
                raise StopIteration
            if len(piece) >= 5 and piece[0] == 0:
                length = int.from_bytes(piece[1:5], "big")
                if length <= self.most and len(piece) == 5 + length:
                    self.count += 1
                    return piece[5:]
            buffer += piece
        while True:
            if len(buffer) >= 5:
                flag, length = buffer[0], int.from_bytes(buffer[1:5], "big")
                if flag > 1:
                    raise CallError(INTERNAL, f"a message flag of {flag}: not 0 or 1")
                if length > self.most:
                    raise CallError(RESOURCE_EXHAUSTED, self._too_large(length))
                if len(buffer) >= 5 + length:
                    message = bytes(buffer[5 : 5 + length])
                    del buffer[: 5 + length]
                    self.count += 1
                    return self._inflated(message) if flag else message
            piece = next(self.pieces, None)
            if piece is None:
                if buffer:
                    raise CallError(INTERNAL, "the request ended inside a message")
                raise StopIteration
            buffer += piece

    def _too_large(self, length: int) -> str:
        return f"a message of {length} bytes, over the {self.most} allowed (--grpc-max-message)"

    def _inflated(self, message: bytes) -> bytes:
        if self.encoding is None:
            raise CallError(INTERNAL, "a compressed message, but no grpc-encoding")
        inflater = zlib.decompressobj(_WBITS[self.encoding])
        try:
            data = inflater.decompress(message, self.most + 1)
        except zlib.error as exc:
            raise CallError(INTERNAL, f"a message that does not decompress: {exc}") from None
        if len(data) > self.most or inflater.unconsumed_tail:
            raise CallError(RESOURCE_EXHAUSTED, self._too_large(len(data)) + " decompressed")
        return data


# -- protobuf's wire format, the pieces the server's own messages need ---------------------


def varint(value: int) -> bytes:
    """``value`` (0 or more) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (string, bytes, message)."""
    return varint(number << 3 | 2) + varint(len(data)) + data


def number_field(number: int, value: int) -> bytes:
    """A varint field (an integer, an enum)."""
    return varint(number << 3) + varint(value)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("a varint cut short")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """A message's fields in order: (number, value), a varint as an int, a length-delimited
    field as bytes, fixed-size ones as their bytes. ``ValueError`` for a malformed message."""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = _read_varint(data, at)
            yield number, value
        elif kind == 2:
            length, at = _read_varint(data, at)
            if at + length > len(data):
                raise ValueError("a field past the message's end")
            yield number, data[at : at + length]
            at += length
        elif kind in (1, 5):
            size = 8 if kind == 1 else 4
            if at + size > len(data):
                raise ValueError("a field past the message's end")
            yield number, data[at : at + size]
            at += size
        else:
            raise ValueError(f"wire type {kind}")
