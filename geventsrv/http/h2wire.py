"""HTTP/2's wire (RFC 9113): frames read and written, and header blocks (HPACK, RFC 7541).

What :mod:`geventsrv.http.h2` needs to speak HTTP/2 without a state machine
library in the way: the frame head (9 bytes: length, type, flags, stream), the
frames the server writes, and header blocks both ways.

Header blocks are decoded by ``hpack`` (the library h2 uses), behind a cache:
a block that left the decoder's table as it found it decodes to the same
list as long as the table is still in that state, and clients repeat the same
few blocks (after the first request on a connection, a load generator's are
a handful of bytes of table indexes). Decoding one such block in Python costs
about 15 µs; finding it in the cache, a dictionary lookup. Responses are
encoded without touching the peer's table: each field indexed from the static
table when it is there whole, else a literal that is not indexed, with its
name indexed when the static table has it. Stateless, so every field's bytes
are made once and kept.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import hpack
from hpack.table import HeaderTable

# hpack logs every field it decodes at debug level: with --log-level debug, a line per
# header of every request, and the cost of making each.
logging.getLogger("hpack").setLevel(logging.WARNING)

#: What a client sends first (RFC 9113 3.4), before its SETTINGS.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x6, 0x7, 0x8, 0x9
# Flags.
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Settings (RFC 9113 6.5.2, RFC 8441 3).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x1, 0x2, 0x3, 0x4
MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, ENABLE_CONNECT_PROTOCOL = 0x5, 0x6, 0x8
# Error codes (RFC 9113 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xA, 0xB
INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = 0xC, 0xD

#: The largest window and the largest frame payload anyone may set.
MAX_WINDOW = (1 << 31) - 1
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
DEFAULT_FRAME_SIZE = 16384
DEFAULT_WINDOW = 65535

_HEAD = struct.Struct(">I B I")  # the first byte of the length rides with the type's word


def frame(kind: int, flags: int, stream: int, payload: bytes | memoryview = b"") -> bytes:
    """One frame: its 9-byte head, then ``payload``."""
    size = len(payload)
    return (
        ((size << 8) | kind).to_bytes(4, "big")
        + bytes((flags,))
        + stream.to_bytes(4, "big")
        + bytes(payload)
    )


def parse_head(head: bytes | memoryview) -> tuple[int, int, int, int]:
    """``(length, type, flags, stream)`` of a 9-byte frame head (the reserved bit dropped)."""
    word, flags, stream = _HEAD.unpack(head)
    return word >> 8, word & 0xFF, flags, stream & 0x7FFFFFFF


def settings_frame(values: dict[int, int]) -> bytes:
    payload = b"".join(struct.pack(">HI", key, value) for key, value in values.items())
    return frame(SETTINGS, 0, 0, payload)


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, increment.to_bytes(4, "big"))


def rst_stream(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, code.to_bytes(4, "big"))


def goaway(last_stream: int, code: int, why: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream, code) + why[:100])


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a SETTINGS payload (its length checked before)."""
    return [struct.unpack_from(">HI", payload, at) for at in range(0, len(payload), 6)]


# -- header blocks ---------------------------------------------------------------------


class Decoded:
    """A header block's fields, and what its user made of them (``derived``, its to
    keep: a block met again, while the table holds, is the same object)."""

    __slots__ = ("derived", "fields")

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.fields = fields
        self.derived: Any = None


class BlockDecoder:
    """HPACK decoding of a connection's header blocks, remembered while the table holds.

    Raises ``hpack.HPACKError`` (a compression error: the connection's table
    cannot be trusted any more) and ``hpack.OversizedHeaderListError`` past
    ``most`` bytes decoded (counted as RFC 9113 counts a header list).
    """

    KEPT = 64

    def __init__(self, most: int, table_size: int = 4096) -> None:
        self.decoder = hpack.Decoder(max_header_list_size=most)
        self.decoder.max_allowed_table_size = table_size
        self._table: HeaderTable = self.decoder.header_table
        #: block -> (the table's state it was decoded in, what it decoded to).
        self._seen: dict[bytes, tuple[tuple[Any, ...], Decoded]] = {}

    def _state(self) -> tuple[Any, ...]:
        entries = self._table.dynamic_entries
        # The newest entry itself, not its id: held here, it cannot be freed and its
        # id reused by a new entry, so an insertion always shows.
        return (len(entries), entries[0] if entries else None, self._table.maxsize)

    def decode(self, block: bytes) -> Decoded:
        """What ``block`` decodes to: its fields as they were encoded (not to be changed:
        the same object comes back for the same block while the table holds)."""
        state = self._state()
        seen = self._seen.get(block)
        if seen is not None and _same(seen[0], state):
            return seen[1]
        fields: list[tuple[bytes, bytes]] = self.decoder.decode(block, raw=True)  # type: ignore[assignment]
        decoded = Decoded(fields)
        if _same(self._state(), state):  # the block left the table alone: its fields are its own
            if len(self._seen) >= self.KEPT:
                self._seen.clear()
            self._seen[block] = (state, decoded)
        return decoded


def _same(one: tuple[Any, ...], other: tuple[Any, ...]) -> bool:
    return one[0] == other[0] and one[1] is other[1] and one[2] == other[2]


_STATIC = {(name, value): index for index, (name, value) in enumerate(HeaderTable.STATIC_TABLE, 1)}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_NAMES.setdefault(_name, _index)

_fields: dict[tuple[bytes, bytes], bytes] = {}
FIELDS_KEPT = 1024


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field, encoded without touching the dynamic table (made once, then kept)."""
    pair = (name, value)
    encoded = _fields.get(pair)
    if encoded is None:
        index = _STATIC.get(pair)
        if index is not None:
            encoded = _integer(index, 7, 0x80)
        else:
            name_index = _STATIC_NAMES.get(name, 0)
            encoded = _integer(name_index, 4, 0x00)
            if not name_index:
                encoded += _integer(len(name), 7, 0) + name
            encoded += _integer(len(value), 7, 0) + value
        if len(_fields) >= FIELDS_KEPT:
            _fields.clear()
        _fields[pair] = encoded
    return encoded


def _integer(value: int, prefix: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with a ``prefix``-bit prefix, ORed into ``first``."""
    most = (1 << prefix) - 1
    if value < most:
        return bytes((first | value,))
    out = bytearray((first | most,))
    value -= most
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
