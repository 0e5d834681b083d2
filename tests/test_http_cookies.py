"""Cookies: ``Set-Cookie`` from the ``cookie`` control, judged before it is sent, and the
request's cookies parsed in the reflection, over real sockets."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from http1client import fetch

from geventsrv.http.cookies import parse_cookie_header, request_cookies, set_cookie


def test_a_cookie_header_parses_leniently():
    assert parse_cookie_header(b'a=1; b="two"; junk; a=again; c=') == {
        "a": "1",
        "b": "two",
        "c": "",
    }
    assert request_cookies([(b"cookie", b"a=1"), (b"Host", b"h"), (b"COOKIE", b"b=2")]) == {
        "a": "1", "b": "2",
    }  # fmt: skip
    assert request_cookies([(b"Host", b"h")]) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [("novalue", "name=value"), ("a=1; Colour=red", "unknown cookie attribute"),
     ("a=1\r\nX: y", "CR, LF"), ("a b=1", "name=value")],
)  # fmt: skip
def test_a_cookie_that_cannot_be_sent_is_refused(text, why):
    with pytest.raises(ValueError, match=why):
        set_cookie(text)


def test_the_cookie_control_sets_each_cookie_asked_for(http_server):
    first = quote("sid=abc; Domain=app.example; Path=/; Secure; SameSite=Lax", safe="")
    second = quote("theme=dark; Max-Age=60", safe="")
    status, headers, _ = fetch(http_server, f"/?cookie={first}&cookie={second}")
    assert status == 200
    assert headers.get_all("Set-Cookie") == [
        "sid=abc; Domain=app.example; Path=/; Secure; SameSite=Lax", "theme=dark; Max-Age=60",
    ]  # fmt: skip
    status, _, body = fetch(http_server, "/?cookie=bad")
    assert status == 400 and b"name=value" in body


def test_the_reflection_shows_the_cookies_that_arrived(http_server):
    _, _, body = fetch(http_server, "/", headers={"Cookie": "sid=abc; theme=dark"})
    assert json.loads(body)["request"]["cookies"] == {"sid": "abc", "theme": "dark"}
    assert json.loads(fetch(http_server, "/")[2])["request"]["cookies"] is None
