"""gRPC's wire as the server reads and writes it: messages cut anywhere, bounds, timeouts,
``grpc-message``'s encoding, and protobuf's fields, checked against the ``protobuf``
library's own encoding where it has one."""

from __future__ import annotations

import gzip
import zlib

import pytest

from geventsrv.http.grpcwire import (
    INTERNAL,
    RESOURCE_EXHAUSTED,
    CallError,
    MessageReader,
    field,
    fields,
    framed,
    number_field,
    parse_timeout,
    percent_encoded,
    varint,
)


def test_messages_cut_at_every_byte_come_out_whole():
    wire = framed(b"first") + framed(b"") + framed(b"x" * 300)
    for cut in range(len(wire) + 1):
        reader = MessageReader([wire[:cut], wire[cut:]], 1000, None)
        assert list(reader) == [b"first", b"", b"x" * 300]
        assert reader.count == 3


def test_compressed_messages_in_either_encoding():
    for encoding, unpack in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
        wire = framed(b"packed" * 100, encoding)
        assert wire[0] == 1 and unpack(wire[5:]) == b"packed" * 100
        assert list(MessageReader([wire], 1000, encoding)) == [b"packed" * 100]


@pytest.mark.parametrize(
    ("pieces", "most", "encoding", "code"),
    [
        ([framed(b"x" * 101)], 100, None, RESOURCE_EXHAUSTED),  # refused by its length alone
        ([framed(b"\0" * 1000, "gzip")], 100, "gzip", RESOURCE_EXHAUSTED),  # small, inflates
        ([framed(b"y", "gzip")], 100, None, INTERNAL),  # compressed, and no encoding said
        ([b"\x02\0\0\0\0"], 100, None, INTERNAL),
        ([framed(b"whole")[:-1]], 100, None, INTERNAL),
    ],
    ids=["over-the-bound", "inflates-past-it", "no-encoding", "flag-2", "cut-short"],
)
def test_what_the_reader_refuses(pieces, most, encoding, code):
    with pytest.raises(CallError) as refused:
        list(MessageReader(pieces, most, encoding))
    assert refused.value.code == code


def test_the_bound_is_inclusive():
    assert list(MessageReader([framed(b"z" * 100)], 100, None)) == [b"z" * 100]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"1S", 1.0), (b"250m", 0.25), (b"2M", 120.0), (b"1H", 3600.0), (b"99999999n", 0.099999999),
     (b"5u", 5e-6)],
)  # fmt: skip
def test_grpc_timeout(value, seconds):
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1s", b"123456789S", b"-1S", b"1.5S"])
def test_a_grpc_timeout_that_is_not_one(value):
    with pytest.raises(ValueError):
        parse_timeout(value)


def test_grpc_message_is_percent_encoded_utf8():
    assert percent_encoded("plain text") == b"plain text"
    assert percent_encoded("100% ✓\n") == b"100%25 %E2%9C%93%0A"


def test_fields_as_protobuf_writes_them():
    struct_pb2 = pytest.importorskip("google.protobuf.wrappers_pb2")
    for text in ("", "a", "é" * 200):
        made = struct_pb2.StringValue(value=text).SerializeToString()
        assert made == (field(1, text.encode()) if text else b"")
    for number in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        made = struct_pb2.UInt64Value(value=number).SerializeToString()
        assert made == (number_field(1, number) if number else b"")
        assert list(fields(made)) == ([(1, number)] if number else [])
    assert varint(300) == b"\xac\x02"


def test_fields_of_every_wire_type_and_what_does_not_parse():
    data = number_field(1, 5) + field(2, b"abc") + b"\x1d" + b"\0\0\x80\x3f" + b"\x21" + b"\0" * 8
    assert list(fields(data)) == [(1, 5), (2, b"abc"), (3, b"\0\0\x80\x3f"), (4, b"\0" * 8)]
    for broken in (b"\x0a\x05abc", b"\x08", b"\x08\xff", b"\x0b", b"\x1d\0"):
        with pytest.raises(ValueError):
            list(fields(broken))
