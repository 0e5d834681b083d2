"""CORS: preflights answered and simple answers marked as httpbin does by default, narrowed
to a list of origins or turned off (by ``--http-cors`` and per request), over real sockets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from http1client import fetch

from geventsrv.http.cors import Policy

PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "x-token, content-type",
}


def test_a_preflight_is_answered_with_what_it_asked_for(http_server):
    status, headers, body = fetch(http_server, "/api", "OPTIONS", PREFLIGHT)
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Methods"] == "PUT"
    assert headers["Access-Control-Allow-Headers"] == "x-token, content-type"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Max-Age"] == "3600" and headers["Vary"] == "Origin"


def test_an_answer_to_a_page_of_another_origin_names_that_origin(http_server):
    _, headers, _ = fetch(http_server, "/", headers={"Origin": "https://app.example"})
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    _, headers, _ = fetch(http_server, "/")
    assert headers["Access-Control-Allow-Origin"] is None  # no Origin, no CORS


def test_an_options_without_the_preflight_headers_is_reflected(http_server):
    status, _, body = fetch(http_server, "/api", "OPTIONS", {"Origin": "https://app.example"})
    assert status == 200 and json.loads(body)["request"]["method"] == "OPTIONS"


def test_a_list_of_origins_allows_only_those(start_server):
    server = start_server("--mode", "http", "--http-cors", "https://a.example, https://b.example")
    _, headers, _ = fetch(server, "/", headers={"Origin": "https://b.example"})
    assert headers["Access-Control-Allow-Origin"] == "https://b.example"
    _, headers, _ = fetch(server, "/", headers={"Origin": "https://evil.example"})
    assert headers["Access-Control-Allow-Origin"] is None and headers["Vary"] == "Origin"
    status, headers, _ = fetch(server, "/", "OPTIONS", PREFLIGHT)  # app.example: not listed
    assert status == 204 and headers["Access-Control-Allow-Origin"] is None


def test_off_leaves_cors_to_the_front(start_server):
    server = start_server("--mode", "http", "--http-cors", "off")
    status, headers, body = fetch(server, "/api", "OPTIONS", PREFLIGHT)
    assert status == 200 and json.loads(body)["request"]["method"] == "OPTIONS"
    assert not [name for name in headers if name.lower().startswith("access-control-")]


def test_the_cors_control_overrides_the_setting_per_request(http_server):
    status, headers, _ = fetch(http_server, "/api?cors=off", "OPTIONS", PREFLIGHT)
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None
    _, headers, _ = fetch(http_server, "/?cors=https://x.example", headers=PREFLIGHT)
    assert headers["Access-Control-Allow-Origin"] is None


def test_policies_parse_and_bad_origins_are_refused():
    assert Policy.parse("*").allows(b"https://any.example")
    assert Policy.parse("off").off
    listed = Policy.parse("https://a.example,http://b.example:8080")
    assert listed.allows(b"http://b.example:8080") and not listed.allows(b"https://c.example")
    with pytest.raises(ValueError, match="scheme://host"):
        Policy.parse("a.example")


def test_a_bad_setting_is_one_line_and_exit_2():
    done = subprocess.run(
        [sys.executable, "-m", "geventsrv", "--mode", "http", "--http-cors", "example.com/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--http-cors" in done.stderr and len(done.stderr.strip().splitlines()) == 1
