"""httpbin's paths over real sockets, asserted as httpbin's own suite asserts them (documents,
statuses, redirects, seeded bytes, ranges), and followed as a client library follows them:
redirect chains and a cookie jar through ``urllib``."""

from __future__ import annotations

import base64
import gzip
import http.cookiejar
import json
import urllib.error
import urllib.request

import pytest
from http1client import exchange, fetch
from support import CLIENT_TIMEOUT


def document(server, target, method="GET", headers=None, body=None):
    status, _, answer = fetch(server, target, method, headers, body)
    assert status == 200, answer
    return json.loads(answer)


def test_get_shows_args_headers_origin_and_url(http_server):
    host = f"127.0.0.1:{http_server.address[1]}"
    seen = document(http_server, "/get?a=1&a=2&b=x", headers={"User-Agent": "test"})
    assert seen == {
        "args": {"a": ["1", "2"], "b": "x"},
        "headers": {"Host": host, "Accept-Encoding": "identity", "User-Agent": "test"},
        "origin": "127.0.0.1",
        "url": f"http://{host}/get?a=1&a=2&b=x",
    }
    proxied = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    seen = document(http_server, "/get", headers=proxied)
    assert seen["origin"] == "203.0.113.9" and seen["url"].startswith("https://")


def test_post_put_patch_delete_show_json_form_files_and_data(http_server):
    seen = document(http_server, "/post", "POST", {"Content-Type": "application/json"},
                    b'{"k": [1, 2]}')  # fmt: skip
    assert seen["json"] == {"k": [1, 2]} and seen["data"] == '{"k": [1, 2]}'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert document(http_server, "/delete", "DELETE", form, b"name=kevin")["form"] == {
        "name": "kevin"
    }
    multipart = (b'--bound\r\nContent-Disposition: form-data; name="media"; '
                 b'filename="test.bin"\r\n\r\n\xa5\xc6\n\r\n--bound--\r\n')  # fmt: skip
    seen = document(http_server, "/put", "PUT",
                    {"Content-Type": "multipart/form-data; boundary=bound"}, multipart)  # fmt: skip
    assert seen["files"]["media"].startswith("data:") and seen["data"] == ""
    unicode = "оживлённым".encode()
    assert document(http_server, "/patch", "PATCH", None, unicode)["data"] == "оживлённым"
    assert fetch(http_server, "/post")[0] == 405
    assert fetch(http_server, "/get", "POST", body=b"x")[1]["Allow"] == "GET"


def test_anything_headers_ip_user_agent_uuid(http_server):
    seen = document(http_server, "/anything/deep/path?x=1", "PURGE")
    assert seen["method"] == "PURGE" and seen["url"].endswith("/anything/deep/path?x=1")
    assert document(http_server, "/headers", headers={"X-Test": "1"})["headers"]["X-Test"] == "1"
    assert document(http_server, "/ip") == {"origin": "127.0.0.1"}
    assert document(http_server, "/user-agent", headers={"User-Agent": "t/1"}) == {
        "user-agent": "t/1"
    }
    assert len(document(http_server, "/uuid")["uuid"]) == 36


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_status_answers_any_method(http_server, method):
    assert fetch(http_server, "/status/418", method)[0] == 418


def test_status_extras_and_weighted_choices(http_server):
    status, headers, _ = fetch(http_server, "/status/302")
    assert status == 302 and headers["Location"] == "/redirect/1"
    status, headers, _ = fetch(http_server, "/status/401")
    assert headers["WWW-Authenticate"] == 'Basic realm="Fake Realm"'
    assert {fetch(http_server, "/status/201:0,503:1")[0] for _ in range(5)} == {503}
    assert fetch(http_server, "/status/999")[0] == 400


def test_bytes_seeded_as_httpbin_seeds_them(http_server):
    expected = b"\xc5\xd7\x14\x84\xf8\xcf\x9b\xf4\xb7o"  # httpbin's answer to ?seed=0
    assert fetch(http_server, "/bytes/10?seed=0")[2] == expected
    assert fetch(http_server, "/stream-bytes/10?seed=0")[2] == expected
    status, headers, body = fetch(http_server, "/bytes/1024")
    assert status == 200 and len(body) == 1024 and headers["Content-Length"] == "1024"
    assert fetch(http_server, "/bytes/1024")[2] != body
    assert len(fetch(http_server, "/stream-bytes/5000")[2]) == 5000


def test_range_serves_the_alphabet_with_ranges(http_server):
    status, headers, body = fetch(http_server, "/range/1234")
    assert status == 200 and len(body) == 1234 and body.startswith(b"abcdefghijklmnopqrstuvwxyza")
    assert headers["ETag"] == '"range1234"' and headers["Accept-Ranges"] == "bytes"
    status, headers, body = fetch(http_server, "/range/100", headers={"Range": "bytes=10-24"})
    assert (status, body, headers["Content-Range"]) == (206, b"klmnopqrstuvwxy", "bytes 10-24/100")
    assert fetch(http_server, "/range/26", headers={"Range": "bytes=-5"})[2] == b"vwxyz"
    assert fetch(http_server, "/range/26", headers={"Range": "bytes=32-40"})[0] == 416


def test_redirects_as_httpbin_sends_them(http_server):
    host = f"127.0.0.1:{http_server.address[1]}"
    locations = {
        "/redirect/5": "/relative-redirect/4",
        "/redirect/1": "/get",
        "/relative-redirect/7": "/relative-redirect/6",
        "/redirect/5?absolute=true": f"http://{host}/absolute-redirect/4",
        "/absolute-redirect/1": f"http://{host}/get",
    }
    for target, location in locations.items():
        status, headers, _ = fetch(http_server, target)
        assert (status, headers["Location"]) == (302, location), target
    status, headers, _ = fetch(http_server, "/redirect-to?url=/post&status_code=307", "POST",
                               body=b"\x01\x02")  # fmt: skip
    assert (status, headers["Location"]) == (307, "/post")


def test_a_client_follows_a_chain_to_its_end(http_server):
    host = f"127.0.0.1:{http_server.address[1]}"
    with urllib.request.urlopen(f"http://{host}/redirect/6", timeout=CLIENT_TIMEOUT) as answer:
        assert answer.url == f"http://{host}/get" and json.load(answer)["url"].endswith("/get")


def test_cookies_round_trip_through_a_cookie_jar(http_server):
    host = f"127.0.0.1:{http_server.address[1]}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"http://{host}/cookies/set?k1=v1&k2=v2", timeout=CLIENT_TIMEOUT) as page:
        assert json.load(page) == {"cookies": {"k1": "v1", "k2": "v2"}}
    with opener.open(f"http://{host}/cookies/delete?k1", timeout=CLIENT_TIMEOUT) as page:
        assert json.load(page) == {"cookies": {"k2": "v2"}}
    with opener.open(f"http://{host}/cookies/set/k3/v3", timeout=CLIENT_TIMEOUT) as page:
        assert json.load(page)["cookies"]["k3"] == "v3"


def test_basic_auth_hidden_basic_auth_and_bearer(http_server):
    good = "Basic " + base64.b64encode(b"user:passwd").decode()
    bad = "Basic " + base64.b64encode(b"user:nope").decode()
    assert document(http_server, "/basic-auth/user/passwd", headers={"Authorization": good}) == {
        "authenticated": True, "user": "user",
    }  # fmt: skip
    status, headers, _ = fetch(
        http_server, "/basic-auth/user/passwd", headers={"Authorization": bad}
    )
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="Fake Realm"'
    assert fetch(http_server, "/hidden-basic-auth/user/passwd")[0] == 404
    assert (
        fetch(http_server, "/hidden-basic-auth/user/passwd", headers={"Authorization": good})[0]
        == 200
    )
    assert fetch(http_server, "/bearer")[0] == 401
    assert document(http_server, "/bearer", headers={"Authorization": "Bearer t0k"}) == {
        "authenticated": True, "token": "t0k",
    }  # fmt: skip


def test_cache_etag_and_response_headers(http_server):
    status, headers, _ = fetch(http_server, "/cache")
    assert status == 200 and headers["Last-Modified"] and headers["ETag"]
    assert (
        fetch(http_server, "/cache", headers={"If-Modified-Since": headers["Last-Modified"]})[0]
        == 304
    )
    assert fetch(http_server, "/cache/60")[1]["Cache-Control"] == "public, max-age=60"
    assert fetch(http_server, "/etag/abc", headers={"If-None-Match": '"abc"'})[0] == 304
    assert fetch(http_server, "/etag/abc", headers={"If-Match": '"xyz"'})[0] == 412
    assert fetch(http_server, "/etag/abc")[1]["ETag"] == '"abc"'
    status, headers, body = fetch(http_server, "/response-headers?animal=dog&animal=cat")
    assert headers.get_all("animal") == ["dog", "cat"] and json.loads(body)["animal"] == [
        "dog",
        "cat",
    ]


def test_gzip_deflate_brotli_and_base64(http_server):
    status, headers, body = fetch(http_server, "/gzip")
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["gzipped"] is True
    assert fetch(http_server, "/deflate")[1]["Content-Encoding"] == "deflate"
    assert fetch(http_server, "/brotli")[1]["Content-Encoding"] == "br"
    greeting = "Здравствуй, мир!"
    encoded = base64.urlsafe_b64encode(greeting.encode()).decode()
    assert fetch(http_server, f"/base64/{encoded}")[2].decode() == greeting


def test_delay_is_bounded_by_the_servers_setting(http_server):
    assert document(http_server, "/delay/0.1")["url"].endswith("/delay/0.1")
    status, _, body = fetch(http_server, "/delay/30")  # the fixture allows 2 seconds
    assert status == 400 and b"0 to 2" in body


def test_other_paths_still_get_the_reflection(http_server):
    assert document(http_server, "/getter")["schema"].startswith("geventsrv.http/")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(
            f"http://127.0.0.1:{http_server.address[1]}/status/404", timeout=CLIENT_TIMEOUT
        )


def test_dump_request_as_go_httpbin_serves_it(http_server):
    head = b"GET /dump/request HTTP/1.1\r\nHost: h\r\nX-Odd:   spaces\t\r\n\r\n"
    status, headers, body = exchange(http_server, head)
    assert status == 200 and body == head and headers["content-type"].startswith("text/plain")
    assert exchange(http_server, b"GET /dump/other HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 404
