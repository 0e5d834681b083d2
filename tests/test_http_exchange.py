"""The version-neutral request head and the helpers every front shares."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from geventsrv.http.exchange import Request, bodiless, http_date


def test_a_request_head_keeps_what_arrived_and_notes_what_the_server_acts_on():
    headers = [
        (b"Host", b"a"), (b"Content-Length", b"12"), (b"content-type", b"text/plain"),
        (b"Expect", b"100-Continue"), (b"Last-Event-ID", b"7"), (b"Upgrade", b"WebSocket"),
        (b"X-Echo-Status", b"503"), (b"x-echo-HEADER", b"A: b"), (b"X-Other", b"kept"),
    ]  # fmt: skip
    request = Request(b"POST", b"/p?q", "1.1", headers)
    assert request.headers is headers  # as it came: order, case, duplicates
    assert (request.hosts, request.content_length, request.content_type) == (1, 12, b"text/plain")
    assert request.expect_continue and request.has_body and not request.chunked
    assert (request.last_event_id, request.upgrade) == (b"7", b"websocket")
    assert request.controls == [("status", b"503"), ("header", b"A: b")]
    assert request.trailers == [] and request.pseudo is None and request.stream_id is None


def test_a_chunked_request_has_a_body_and_an_empty_one_none():
    assert Request(b"POST", b"/", "1.1", [(b"Transfer-Encoding", b"chunked")]).has_body
    assert not Request(b"POST", b"/", "1.1", [(b"Content-Length", b"0")]).has_body


def test_the_date_is_http_s_format_and_now():
    shown = http_date()
    assert shown.endswith(b" GMT")
    assert abs(parsedate_to_datetime(shown.decode()).timestamp() - time.time()) < 2


def test_bodiless_statuses():
    assert [status for status in (100, 101, 200, 204, 206, 304, 404) if bodiless(status)] == [
        100, 101, 204, 304,
    ]  # fmt: skip


def test_a_copy_has_every_part_of_the_head_and_trailers_of_its_own():
    original = Request(b"POST", b"/x", "2", [(b"content-length", b"3")])
    for number, name in enumerate(Request.__slots__):
        setattr(original, name, f"value {number}")  # every slot, told apart
    original.trailers = [(b"x-t", b"1")]
    copy = original.copy()
    for name in Request.__slots__:
        if name != "trailers":
            assert getattr(copy, name) == getattr(original, name), name
    assert copy.trailers == [] and original.trailers == [(b"x-t", b"1")]
