"""The HTTP semantics through what people put in front, and curl driving each control.

nginx's ``proxy_cache`` serving the second request from its cache and revalidating with a
conditional request the server answers 304; nginx compressing an identity answer and passing
a compressed one through; nginx forwarding ``Range`` and the 206; nginx rewriting
``Location`` and a cookie's domain (``proxy_redirect``, ``proxy_cookie_domain``). nginx is
started for each test from a configuration written here (installed by the test setup where
it is missing). Slow-marked: peers run once, not on every interpreter of the matrix.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import brotli
import pytest
from support import CLIENT_TIMEOUT, require_tool
from test_http_mode_proxies import nginx_in_front

from geventsrv.http.patterns import PATTERN

pytestmark = pytest.mark.slow


def fetch(port: int, path: str, headers: dict[str, str] | None = None):
    """Status, headers and raw body of one request to ``port`` (never decoded, never
    following a redirect)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with opener.open(request, timeout=CLIENT_TIMEOUT) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def test_nginx_proxy_cache_hits_then_revalidates_with_a_304(start_server, tmp_path: Path):
    server = start_server("--mode", "http", "--access-log")
    cache = """
        proxy_cache answers;
        proxy_cache_revalidate on;
        add_header X-Cache-Status $upstream_cache_status always;"""
    # nginx's workers drop root's rights where it runs as root: the cache (and its temporary
    # files) must be theirs to write, outside pytest's private temporary tree.
    with tempfile.TemporaryDirectory() as stored:
        os.chmod(stored, 0o777)
        zone = f"proxy_cache_path {stored} keys_zone=answers:1m use_temp_path=off;"
        ported = nginx_in_front(server.port, tmp_path, extra=cache, http=zone)
        replies = cached_then_revalidated(ported)
    first, second, third = replies
    assert first[1]["X-Cache-Status"] == "MISS" and second[1]["X-Cache-Status"] == "HIT"
    assert second[2] == first[2]  # the same answer: the request number it carries too
    assert third[1]["X-Cache-Status"] == "REVALIDATED" and third[2] == first[2]
    server.stop()
    answered = [line for line in server.stderr.splitlines() if "GET /page" in line]
    assert [line.split(" HTTP/")[1].split(",")[0] for line in answered] == ["1.0 200", "1.0 304"]


def cached_then_revalidated(ported) -> list:
    """Three requests through the cache: a miss, a hit, and one once the copy is stale."""
    with ported as port:
        page = "/page?etag=v1&cache=max-age=1"
        replies = [fetch(port, page), fetch(port, page)]
        time.sleep(2.5)  # past max-age (nginx counts whole seconds): the copy is stale
        return [*replies, fetch(port, page)]


def test_nginx_compresses_an_identity_answer_and_passes_a_compressed_one(start_server, tmp_path):
    server = start_server("--mode", "http")
    gzip_on = "gzip on; gzip_proxied any; gzip_types application/json application/octet-stream;"
    with nginx_in_front(server.port, tmp_path, http=gzip_on) as port:
        status, headers, body = fetch(port, "/plain", {"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        seen = json.loads(gzip.decompress(body))
        # nginx asked the server for the body as it is: it compresses it itself.
        assert ["Accept-Encoding", "gzip"] in seen["request"]["headers"]
        size = 200_000
        status, headers, body = fetch(
            port, f"/?bytes={size}&compress=br", {"Accept-Encoding": "gzip, br"}
        )
        assert headers["Content-Encoding"] == "br"  # the server's coding, passed through
        assert brotli.decompress(body) == (PATTERN * 4)[:size]


def test_nginx_forwards_range_and_the_206(start_server, tmp_path):
    server = start_server("--mode", "http")
    with nginx_in_front(server.port, tmp_path) as port:
        status, headers, body = fetch(port, "/?bytes=100000", {"Range": "bytes=70000-70009"})
        assert (status, body) == (206, PATTERN[70000 % 16 : 70000 % 16 + 10])
        assert headers["Content-Range"] == "bytes 70000-70009/100000"
        _, _, reflected = fetch(port, "/", {"Range": "bytes=1-2"})
        assert ["Range", "bytes=1-2"] in json.loads(reflected)["request"]["headers"]


def test_nginx_rewrites_location_and_the_cookie_domain(start_server, tmp_path):
    server = start_server("--mode", "http")
    rewrite = """
        proxy_redirect http://backend.internal/ http://front.example/;
        proxy_cookie_domain backend.internal front.example;
        proxy_cookie_path /app/ /;"""
    with nginx_in_front(server.port, tmp_path, extra=rewrite) as port:
        cookie = quote("sid=1; Domain=backend.internal; Path=/app/; HttpOnly", safe="")
        path = f"/?location=http://backend.internal/next&cookie={cookie}"
        status, headers, _ = fetch(port, path)
        assert status == 302 and headers["Location"] == "http://front.example/next"
        assert headers["Set-Cookie"] == "sid=1; Domain=front.example; Path=/; HttpOnly"
        status, headers, _ = fetch(server.port, path)  # and what the server itself sent
        assert headers["Location"] == "http://backend.internal/next"


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("curl", "curl"), "-sS", "--max-time", "10", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_curl_drives_each_control(start_server, tmp_path):
    server = start_server("--mode", "http")
    base = f"http://127.0.0.1:{server.port}"
    assert (
        json.loads(curl("--compressed", f"{base}/x?compress=1").stdout)["request"]["path"] == "/x"
    )
    assert curl("-r", "5-9", f"{base}/?bytes=100").stdout == "56789"
    chained = curl("-L", "-o", "/dev/null", "-w", "%{num_redirects} %{url_effective}",
                   f"{base}/redirect/4").stdout  # fmt: skip
    assert chained == f"4 {base}/get"
    assert curl("-u", "ann:pw", f"{base}/basic-auth/ann/pw").stdout.count('"authenticated": true')
    jar = tmp_path / "jar"
    curl("-c", str(jar), "-L", f"{base}/cookies/set?k=v")
    assert json.loads(curl("-b", str(jar), f"{base}/cookies").stdout) == {"cookies": {"k": "v"}}
    validated = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", 'If-None-Match: "v1"',
                     f"{base}/?etag=v1")  # fmt: skip
    assert validated.stdout == "304"
    preflight = curl("-si", "-X", "OPTIONS", "-H", "Origin: https://a.example",
                     "-H", "Access-Control-Request-Method: PUT", f"{base}/api")  # fmt: skip
    assert "access-control-allow-origin: https://a.example" in preflight.stdout.lower()
