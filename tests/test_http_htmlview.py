"""The reflection as a page: chosen by a browser's ``Accept`` or by ``format``, every value
escaped, and the whole JSON document in it, over real sockets."""

from __future__ import annotations

import html
import json
import re

from http1client import fetch

from geventsrv.http.htmlview import render, wants_html
from geventsrv.http.reflection import encode

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def embedded(page: bytes) -> dict:
    """The JSON document the page carries in its only ``<pre>``."""
    found = re.findall(rb"<pre>(.*?)</pre>", page, re.S)
    assert len(found) == 1
    return json.loads(html.unescape(found[0].decode()))


def test_a_browser_asks_for_the_page_and_curl_does_not():
    assert wants_html(BROWSER.encode()) and wants_html(b"TEXT/HTML")
    assert not wants_html(b"*/*") and not wants_html(None)
    assert not wants_html(b"application/json, text/html")


def test_the_page_escapes_what_the_client_sent(http_server):
    status, headers, page = fetch(
        http_server, "/x?q=%3Cscript%3Ealert(1)%3C/script%3E",
        headers={"Accept": BROWSER, "X-Evil": '"><img src=x onerror=alert(1)>'},
    )  # fmt: skip
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<script>" not in page and b"<img" not in page
    assert b"&lt;img src=x onerror=alert(1)&gt;" in page
    seen = embedded(page)
    assert seen["request"]["query"] == {"q": ["<script>alert(1)</script>"]}
    assert ["X-Evil", '"><img src=x onerror=alert(1)>'] in seen["request"]["headers"]


def test_format_chooses_either_way(http_server):
    _, headers, body = fetch(http_server, "/?format=json", headers={"Accept": BROWSER})
    assert headers["Content-Type"] == "application/json" and json.loads(body)["request"]
    _, headers, page = fetch(http_server, "/?format=html")
    assert headers["Content-Type"].startswith("text/html") and embedded(page)["request"]
    assert fetch(http_server, "/?format=xml")[0] == 400


def test_a_cacheable_reflection_varies_with_accept(http_server):
    _, headers, _ = fetch(http_server, "/?cache=max-age=60", headers={"Accept": BROWSER})
    assert "Accept" in (headers.get_all("Vary") or [])
    assert fetch(http_server, "/")[1]["Vary"] is None  # no-store: nothing to vary


def test_render_lays_out_every_part_of_the_document():
    document: dict[str, object] = {
        "schema": "geventsrv.http/1.4",
        "request": {
            "number": 3, "method": "POST", "target": "/a", "path": "/a", "query": {},
            "http_version": "2", "stream": 5, "pseudo_headers": [[":method", "POST"]],
            "headers": [["content-type", "text/plain"]], "trailers": [["x-sum", "1"]],
            "cookies": None, "auth": None,
        },
        "body": {"size": 2, "text": "hi", "base64": None, "json": None, "encoding": None,
                 "form": None},
        "client": {"peer": "127.0.0.1:1"}, "proxy": None, "tls": {"version": "TLSv1.3"},
        "server": {"host": "h", "connection": 9},
    }  # fmt: skip
    page = render(encode(document))
    for shown in (b"POST /a HTTP/2", b"Pseudo-headers", b"Trailers", b"x-sum", b"TLSv1.3"):
        assert shown in page
    assert embedded(page) == document
