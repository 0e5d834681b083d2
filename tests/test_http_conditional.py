"""Conditional requests: the preconditions judged in RFC 9110's order, then over real sockets
a cache's revalidation answered 304 and a failed ``If-Match`` 412."""

from __future__ import annotations

import json

from http1client import fetch

from geventsrv.http.conditional import (
    http_date_of,
    precondition,
    quoted_etag,
    range_still_valid,
)
from geventsrv.http.exchange import Request

MODIFIED = 1_700_000_000.0
EARLIER, LATER = http_date_of(MODIFIED - 60), http_date_of(MODIFIED + 60)


def judged(method: bytes, *headers: tuple[bytes, bytes], etag=b'"v1"', modified=MODIFIED):
    return precondition(Request(method, b"/", "1.1", list(headers)), etag, modified)


def test_if_none_match_answers_a_read_304_and_a_write_412():
    assert judged(b"GET", (b"If-None-Match", b'"v0", W/"v1"')) == 304  # weak comparison
    assert judged(b"HEAD", (b"If-None-Match", b"*")) == 304
    assert judged(b"PUT", (b"If-None-Match", b'"v1"')) == 412
    assert judged(b"GET", (b"If-None-Match", b'"v2"')) is None


def test_if_match_compares_strongly_and_comes_first():
    assert judged(b"PUT", (b"If-Match", b'"v2"')) == 412
    assert judged(b"PUT", (b"If-Match", b'"v1"')) is None
    assert judged(b"PUT", (b"If-Match", b"*")) is None
    assert judged(b"PUT", (b"If-Match", b'"v1"'), etag=b'W/"v1"') == 412  # weak never matches
    # If-Match given: If-Unmodified-Since is not looked at.
    assert judged(b"PUT", (b"If-Match", b'"v1"'), (b"If-Unmodified-Since", EARLIER)) is None


def test_dates_judge_only_without_the_tags():
    assert judged(b"GET", (b"If-Modified-Since", LATER)) == 304
    assert judged(b"GET", (b"If-Modified-Since", EARLIER)) is None
    assert judged(b"POST", (b"If-Modified-Since", LATER)) is None  # GET and HEAD only
    assert judged(b"GET", (b"If-Modified-Since", b"not a date")) is None  # ignored
    assert judged(b"GET", (b"If-None-Match", b'"v2"'), (b"If-Modified-Since", LATER)) is None
    assert judged(b"PUT", (b"If-Unmodified-Since", EARLIER)) == 412
    assert judged(b"PUT", (b"If-Unmodified-Since", LATER)) is None


def test_if_range_names_the_representation_strongly_or_by_exact_date():
    assert range_still_valid(None, None, None)
    assert range_still_valid(b'"v1"', b'"v1"', None)
    assert not range_still_valid(b'"v0"', b'"v1"', None)
    assert not range_still_valid(b'W/"v1"', b'W/"v1"', None)
    assert range_still_valid(http_date_of(MODIFIED), None, MODIFIED)
    assert not range_still_valid(LATER, None, MODIFIED)


def test_entity_tags_are_quoted_once():
    assert quoted_etag("abc") == b'"abc"'
    assert quoted_etag('"abc"') == b'"abc"' and quoted_etag('W/"abc"') == b'W/"abc"'


def test_a_cache_revalidating_gets_304_with_the_validators_and_no_body(http_server):
    target = f"/doc?etag=v1&last-modified={int(MODIFIED)}&cache=public,%20max-age=60"
    status, headers, body = fetch(http_server, target)
    assert status == 200 and headers["ETag"] == '"v1"'
    assert headers["Cache-Control"] == "public, max-age=60"
    assert headers["Last-Modified"] == http_date_of(MODIFIED).decode()
    assert json.loads(body)["request"]["path"] == "/doc"
    status, headers, body = fetch(http_server, target, headers={"If-None-Match": '"v1"'})
    assert (status, body, headers["ETag"]) == (304, b"", '"v1"')
    assert headers["Cache-Control"] == "public, max-age=60"
    since = {"If-Modified-Since": http_date_of(MODIFIED).decode()}
    assert fetch(http_server, target, headers=since)[0] == 304
    assert fetch(http_server, target, headers={"If-None-Match": '"v0"'})[0] == 200


def test_a_write_whose_if_match_fails_gets_412_and_the_others_are_answered(http_server):
    status, _, body = fetch(
        http_server, "/doc?etag=v2", "PUT", {"If-Match": '"v1"'}, b"new"
    )  # fmt: skip
    assert status == 412 and b"precondition" in body
    status, _, body = fetch(http_server, "/doc?etag=v2", "PUT", {"If-Match": '"v2"'}, b"new")
    assert status == 200 and json.loads(body)["body"]["text"] == "new"
    # Without validators, preconditions are not judged: the request is answered.
    assert fetch(http_server, "/doc", "PUT", {"If-Match": '"v1"'}, b"x")[0] == 200


def test_a_bad_last_modified_is_a_400(http_server):
    status, _, body = fetch(http_server, "/?last-modified=yesterday")
    assert status == 400 and b"last-modified" in body
