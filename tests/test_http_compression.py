"""Content codings: the best one the client accepts chosen, responses compressed in every
coding and read back by each coding's own library, request bodies decoded for the reflection,
and a decompression bomb costing only its request (413), over real sockets."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import zstandard
from http1client import fetch

from geventsrv.http import compression
from geventsrv.http.patterns import PATTERN

DECODERS = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}
ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def test_every_coding_is_available_with_the_compression_extra():
    assert compression.available() == ["br", "zstd", "gzip", "deflate"]


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [(b"gzip, deflate, br, zstd", "br"), (b"gzip;q=0.5, deflate", "deflate"),
     (b"gzip;q=0, *;q=0.1", "br"), (b"identity", None), (b"*;q=0", None), (None, None),
     (b"x-gzip", "gzip"), (b"GZIP;Q=1.0", "gzip"), (b"gzip;q=bad", None)],
)  # fmt: skip
def test_the_best_coding_the_client_accepts_is_chosen(accept, chosen):
    assert compression.negotiate(accept) == chosen


@pytest.mark.parametrize("coding", sorted(DECODERS))
def test_a_generated_body_compressed_in_each_coding_reads_back_whole(http_server, coding):
    size = 3 * len(PATTERN) + 5
    status, headers, body = fetch(
        http_server, f"/?bytes={size}&compress=1", headers={"Accept-Encoding": coding}
    )
    assert status == 200 and headers["Content-Encoding"] == coding
    assert headers["Vary"] == "Accept-Encoding" and headers["Accept-Ranges"] is None
    assert DECODERS[coding](body) == (PATTERN * 4)[:size]


def test_the_reflection_compressed_and_a_named_coding_sent_whatever_is_accepted(http_server):
    status, headers, body = fetch(http_server, "/x?compress=gzip")
    assert status == 200 and headers["Content-Encoding"] == "gzip" and headers["Vary"] is None
    assert json.loads(gzip.decompress(body))["request"]["path"] == "/x"
    status, headers, body = fetch(http_server, "/x?compress=1")  # nothing accepted
    assert headers["Content-Encoding"] is None and headers["Vary"] == "Accept-Encoding"
    assert json.loads(body)["request"]["path"] == "/x"
    assert fetch(http_server, "/?compress=lzma")[0] == 400


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_a_request_body_is_decoded_for_the_reflection(http_server, coding):
    sent = ENCODERS[coding](b'{"greeting": "hello"}')
    headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
    status, _, body = fetch(http_server, "/", "POST", headers, sent)
    shown = json.loads(body)["body"]
    assert status == 200 and shown["json"] == {"greeting": "hello"}
    assert shown["encoding"] == {"coding": coding, "size": len(sent)}


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_a_decompression_bomb_costs_only_its_request(http_server, coding):
    bomb = ENCODERS[coding](bytes(50_000_000))  # far past the server's 100,000-byte bound
    assert len(bomb) < 100_000
    status, _, body = fetch(http_server, "/", "POST", {"Content-Encoding": coding}, bomb)
    assert status == 413 and b"decodes to more than" in body
    assert fetch(http_server, "/")[0] == 200


def test_a_body_not_in_its_coding_is_a_400(http_server):
    status, _, body = fetch(http_server, "/", "POST", {"Content-Encoding": "gzip"}, b"not gzip")
    assert status == 400 and b"not valid gzip" in body
    status, _, body = fetch(http_server, "/", "POST", {"Content-Encoding": "lzma"}, b"x")
    assert status == 400 and b"unknown content coding" in body
