"""Byte ranges of generated bodies: the ``Range`` parsed and bounded, then over real sockets
206 with one range, a ``multipart/byteranges`` body with several, 416, and ``If-Range``."""

from __future__ import annotations

import email.parser

import pytest
from http1client import fetch

from geventsrv.http.patterns import PATTERN
from geventsrv.http.ranges import MAX_RANGES, Unsatisfiable, merged, parse_ranges


def test_ranges_parse_as_the_rfc_says():
    assert parse_ranges(b"bytes=0-9", 100) == [(0, 9)]
    assert parse_ranges(b"bytes=90-", 100) == [(90, 99)]
    assert parse_ranges(b"bytes=-5", 100) == [(95, 99)]
    assert parse_ranges(b"bytes=-500", 100) == [(0, 99)]
    assert parse_ranges(b"bytes=50-500", 100) == [(50, 99)]
    assert parse_ranges(b"BYTES = 1-2, 5-6", 100) == [(1, 2), (5, 6)]


def test_overlapping_ranges_are_merged_so_an_answer_never_outgrows_the_body():
    assert parse_ranges(b"bytes=0-50,10-20,51-60,90-", 100) == [(0, 60), (90, 99)]
    assert merged([(5, 5), (0, 4)]) == [(0, 5)]
    many = b"bytes=" + b",".join(b"0-99" for _ in range(MAX_RANGES))
    assert parse_ranges(many, 100) == [(0, 99)]


@pytest.mark.parametrize(
    "value", [b"items=0-1", b"bytes=5-2", b"bytes=a-b", b"bytes=", b"bytes=-", b"0-1",
              b"bytes=" + b",".join(b"0-1" for _ in range(MAX_RANGES + 1))],
)  # fmt: skip
def test_a_range_that_does_not_parse_is_ignored(value):
    assert parse_ranges(value, 100) is None


@pytest.mark.parametrize("value", [b"bytes=100-", b"bytes=200-300", b"bytes=-0"])
def test_a_range_outside_the_body_cannot_be_satisfied(value):
    with pytest.raises(Unsatisfiable):
        parse_ranges(value, 100)


def test_one_range_is_a_206_of_exactly_those_bytes(http_server):
    status, headers, body = fetch(http_server, "/?bytes=1000", headers={"Range": "bytes=100-199"})
    assert status == 206 and headers["Content-Range"] == "bytes 100-199/1000"
    assert body == PATTERN[100:200] and headers["Accept-Ranges"] == "bytes"


def test_several_ranges_are_a_multipart_body_a_mail_parser_reads(http_server):
    asked = {"Range": "bytes=0-9, 500-509, -5"}
    status, headers, body = fetch(http_server, "/?bytes=1000", headers=asked)
    assert status == 206 and headers.get_content_type() == "multipart/byteranges"
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    )
    parts = [(part["Content-Range"], part.get_payload(decode=True)) for part in message.walk()
             if not part.is_multipart()]  # fmt: skip
    assert parts == [
        ("bytes 0-9/1000", PATTERN[0:10]),
        ("bytes 500-509/1000", PATTERN[500:510]),
        ("bytes 995-999/1000", PATTERN[995:1000]),
    ]
    assert int(headers["Content-Length"]) == len(body)


def test_a_range_past_the_end_is_416_naming_the_size(http_server):
    status, headers, _ = fetch(http_server, "/?bytes=1000", headers={"Range": "bytes=5000-"})
    assert status == 416 and headers["Content-Range"] == "bytes */1000"


def test_if_range_serves_the_range_only_while_the_tag_matches(http_server):
    target = "/?bytes=1000&etag=v1"
    same = {"Range": "bytes=0-1", "If-Range": '"v1"'}
    other = {"Range": "bytes=0-1", "If-Range": '"v0"'}
    assert fetch(http_server, target, headers=same)[:3:2] == (206, PATTERN[:2])
    status, _, body = fetch(http_server, target, headers=other)
    assert status == 200 and body == PATTERN[:1000]


def test_a_large_range_comes_from_the_right_offset(http_server):
    size = 3 * len(PATTERN) + 7
    first = len(PATTERN) + 3
    status, _, body = fetch(
        http_server, f"/?bytes={size}", headers={"Range": f"bytes={first}-{first + 99_999}"}
    )
    expected = (PATTERN * 4)[first : first + 100_000]
    assert status == 206 and body == expected
