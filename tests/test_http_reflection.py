"""The reflection's parts that judge nothing: the body as shown (decoded, a form's fields), and
RFC 7239 ``Forwarded``."""

from __future__ import annotations

import base64

from geventsrv.http.reflection import SCHEMA, describe_body, encode, parse_forwarded


def test_a_body_is_shown_as_text_json_or_base64():
    assert describe_body(b'{"a": [1]}') == {
        "size": 10, "text": '{"a": [1]}', "base64": None, "json": {"a": [1]},
        "encoding": None, "form": None,
    }  # fmt: skip
    assert describe_body(b"plain")["json"] is None
    binary = describe_body(b"\xff\x00")
    assert binary["text"] is None and base64.b64decode(str(binary["base64"])) == b"\xff\x00"
    assert describe_body(b"") == {
        "size": 0, "text": "", "base64": None, "json": None, "encoding": None, "form": None,
    }  # fmt: skip
    deep = b"[" * 100_000 + b"]" * 100_000  # valid JSON, nested past the parser's recursion
    assert describe_body(deep)["json"] is None and describe_body(deep)["size"] == 200_000


def test_forwarded_elements_as_given_quotes_removed_bad_pairs_skipped():
    value = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711", junk'
    assert parse_forwarded(value) == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
        {"for": "[2001:db8:cafe::17]:4711"},
    ]
    assert parse_forwarded("For=x;PROTO=https") == [{"for": "x", "proto": "https"}]


def test_a_document_is_one_line_of_json():
    encoded = encode({"schema": SCHEMA, "text": "a\nb"})
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1


def test_a_decoded_body_says_what_it_arrived_as():
    shown = describe_body(b"hello", b"text/plain", ("gzip", 25))
    assert shown["text"] == "hello" and shown["encoding"] == {"coding": "gzip", "size": 25}
