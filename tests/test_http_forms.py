"""Form bodies in the reflection: fields by name, files by name, type, size and SHA-256."""

from __future__ import annotations

import hashlib
import json

from http1client import fetch

from geventsrv.http.forms import multipart_files, parse_form

BOUNDARY = "b0undary"
MULTIPART = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello world\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="tag"\r\n\r\n\u00e9t\u00e9\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="tag"\r\n\r\ntwo\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="upload"; filename="a.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    + bytes(range(256))
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}".encode()


def test_urlencoded_fields_keep_every_value():
    form = parse_form(b"application/x-www-form-urlencoded", b"a=1&a=2&b=%C3%A9t%C3%A9&c=")
    assert form == {"fields": {"a": ["1", "2"], "b": ["\u00e9t\u00e9"], "c": [""]}, "files": []}


def test_multipart_fields_and_files():
    form = parse_form(MULTIPART_TYPE, MULTIPART)
    assert form is not None
    assert form["fields"] == {"title": ["hello world"], "tag": ["\u00e9t\u00e9", "two"]}
    assert form["files"] == [{
        "field": "upload", "filename": "a.bin", "type": "application/octet-stream",
        "size": 256, "sha256": hashlib.sha256(bytes(range(256))).hexdigest(),
    }]  # fmt: skip
    assert list(multipart_files(MULTIPART_TYPE, MULTIPART)) == [
        ("upload", b"application/octet-stream", bytes(range(256)))
    ]


def test_what_is_not_a_form_is_not_parsed():
    assert parse_form(b"application/json", b'{"a": 1}') is None
    assert parse_form(None, b"a=1") is None
    assert parse_form(b"multipart/form-data", b"no boundary") is None
    assert parse_form(MULTIPART_TYPE, b"garbage without parts") == {"fields": {}, "files": []}


def test_the_reflection_shows_a_form_post(http_server):
    headers = {"Content-Type": MULTIPART_TYPE.decode()}
    status, _, body = fetch(http_server, "/upload", "POST", headers, MULTIPART)
    shown = json.loads(body)["body"]
    assert status == 200 and shown["size"] == len(MULTIPART)
    assert shown["form"]["fields"]["title"] == ["hello world"]
    assert shown["form"]["files"][0]["size"] == 256
