"""HTTP/2's wire: frame heads, and header blocks against the hpack library's own coder."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from geventsrv.http import h2wire as wire


def test_a_frame_head_round_trips_and_drops_the_reserved_bit():
    made = wire.frame(wire.HEADERS, wire.END_HEADERS, 5, b"abc")
    assert len(made) == 9 + 3 and made.endswith(b"abc")
    assert wire.parse_head(made[:9]) == (3, wire.HEADERS, wire.END_HEADERS, 5)
    reserved = bytes(made[:5]) + bytes((made[5] | 0x80,)) + made[6:9]
    assert wire.parse_head(reserved)[3] == 5


def test_settings_and_control_frames():
    made = wire.settings_frame({wire.MAX_CONCURRENT_STREAMS: 100, wire.INITIAL_WINDOW_SIZE: 1})
    length, kind, flags, stream = wire.parse_head(made[:9])
    assert (length, kind, flags, stream) == (12, wire.SETTINGS, 0, 0)
    assert wire.parse_settings(made[9:]) == [(3, 100), (4, 1)]
    assert wire.window_update(3, 70000)[9:] == (70000).to_bytes(4, "big")
    assert wire.rst_stream(7, wire.CANCEL)[9:] == b"\0\0\0\x08"
    assert wire.goaway(9, wire.ENHANCE_YOUR_CALM, b"why")[9:] == b"\0\0\0\x09\0\0\0\x0bwhy"


FIELD = st.tuples(
    st.sampled_from([b":status", b"content-type", b"date", b"x-custom", b"server", b"a" * 200]),
    st.binary(max_size=300).filter(lambda v: b"\n" not in v),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(FIELD, max_size=12))
def test_encoded_fields_decode_to_themselves_with_a_fresh_hpack_decoder(fields):
    """Encoded without the dynamic table: any decoder, in any state, reads them back."""
    block = b"".join(wire.encode_field(name, value) for name, value in fields)
    assert hpack.Decoder().decode(block, raw=True) == fields
    decoder = hpack.Decoder()
    decoder.decode(hpack.Encoder().encode([("x-filler", "y" * 50)]), raw=True)
    assert decoder.decode(block, raw=True) == fields


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["x-a", "x-b", "user-agent", ":path", "cookie"]),
                st.sampled_from(["1", "2", "three", "/", "/long/" + "p" * 40]),
            ),
            max_size=6,
        ),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_the_block_cache_decodes_as_the_library_does(header_lists, table_size):
    """Differential: the cached decoder and hpack's own agree on every block of a
    connection, blocks that change the table and blocks repeated, whatever the table's size."""
    encoder = hpack.Encoder()
    encoder.header_table_size = table_size
    plain = hpack.Decoder()
    cached = wire.BlockDecoder(1 << 20)
    for fields in header_lists + header_lists[: len(header_lists) // 2]:
        block = encoder.encode(fields)
        expected = plain.decode(block, raw=True)
        assert cached.decode(block).fields == expected


def test_a_repeated_block_is_decoded_once_while_the_table_stands():
    encoder = hpack.Encoder()
    cached = wire.BlockDecoder(1 << 20)
    fields = [(":method", "GET"), (":path", "/"), ("user-agent", "load/1.0")]
    first = encoder.encode(fields)  # literals, indexed into the table
    second = encoder.encode(fields)  # the same fields: table indexes only
    assert cached.decode(first).fields == cached.decode(second).fields == [
        (b":method", b"GET"), (b":path", b"/"), (b"user-agent", b"load/1.0"),
    ]  # fmt: skip
    before = cached.decoder.header_table.dynamic_entries.copy()
    cached.decoder = None  # type: ignore[assignment]  # a decode would fail: none happens
    known = cached.decode(second)
    for _ in range(5):
        assert cached.decode(second) is known  # what its user made of it is kept with it
    assert before


def test_an_oversized_header_list_is_refused():
    import pytest

    block = hpack.Encoder().encode([("x-big", "v" * 5000)])
    with pytest.raises(hpack.OversizedHeaderListError):
        wire.BlockDecoder(4096).decode(block)
