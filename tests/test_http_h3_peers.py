"""HTTP/3 against real peers: libcurl's HTTP/3 (curl_cffi, on ngtcp2), headless Chromium
over QUIC with a test CA it trusts, and caddy in front (HTTP/3 to the client, HTTP/2 over TLS
to the server). Installed by the test setup where missing (PyPI's curl_cffi; Debian's
chromium, libnss3-tools, caddy), skipped with the reason where that cannot be. Slow-marked:
each peer starts once, not on every interpreter of the matrix.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from support import free_port, require_tool
from test_http_mode_proxies import caddy_in_front
from test_http_websocket_peers import CHROMIUM_FLAGS, trusting_home

pytestmark = pytest.mark.slow
h3client = pytest.importorskip("h3client")  # aioquic, the client


@pytest.fixture
def server(start_server, certs):
    return start_server("--mode", "http", "--tls-cert", certs.server, "--http3",
                        "--access-log", "--http-max-body", str(4 << 20))  # fmt: skip


def test_libcurl_fetches_the_reflection_echo_and_events_over_http3(server, certs):
    curl_cffi = pytest.importorskip("curl_cffi.requests")
    origin = f"https://localhost:{server.port}"

    def call(method: str, path: str, **kwargs):
        return curl_cffi.request(method, origin + path, verify=certs.ca, timeout=20,
                                 http_version="v3only", **kwargs)  # fmt: skip

    seen = call("GET", "/from-libcurl?x=1").json()
    assert seen["request"]["http_version"] == "3" and seen["tls"]["alpn"] == "h3"
    assert seen["request"]["query"] == {"x": ["1"]}
    body = os.urandom(2 << 20)
    echoed = call("POST", "/echo", data=body)
    assert hashlib.sha256(echoed.content).digest() == hashlib.sha256(body).digest()
    events = call("GET", "/sse?count=3&interval=0.01")
    assert events.content.count(b"data: ") == 3
    head = call("HEAD", "/?bytes=1000")
    assert head.status_code == 200 and head.headers["content-length"] == "1000"


def browse_over_quic(url: str, home: Path, port: int) -> str:
    """The page's DOM as headless Chromium leaves it, QUIC forced for the origin."""
    binary = require_tool("chromium", "chromium")
    flags = [flag for flag in CHROMIUM_FLAGS if flag != "--disable-quic"]
    result = subprocess.run(
        [binary, *flags, "--enable-quic", f"--origin-to-force-quic-on=localhost:{port}",
         "--host-resolver-rules=MAP localhost 127.0.0.1",  # QUIC has no fallback to ::1's
         f"--user-data-dir={home / 'profile'}", url],
        capture_output=True, text=True, timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return result.stdout


def test_chromium_loads_the_reflection_and_the_page_over_quic(server, certs, tmp_path):
    home = trusting_home(tmp_path, certs)
    dom = browse_over_quic(f"https://localhost:{server.port}/from-chromium?format=json", home,
                           server.port)  # fmt: skip
    page = re.search(r"<pre[^>]*>(.*?)</pre>", dom, re.S)
    assert page, dom[-3000:]
    seen = json.loads(html.unescape(page.group(1)))
    assert seen["request"]["http_version"] == "3" and seen["tls"]["alpn"] == "h3"
    headers = dict(seen["request"]["headers"])
    assert "HeadlessChrome" in headers["user-agent"] and "sec-ch-ua" in headers
    # The /.ws page comes over HTTP/3 too; Chromium opens its WebSocket on TCP (it does not
    # speak RFC 9220), and the echo works there.
    dom = browse_over_quic(f"https://localhost:{server.port}/.ws?send=from%20quic", home,
                           server.port)  # fmt: skip
    assert '<li class="echo">from quic</li>' in dom, dom[-3000:]
    server.wait_for_log(r"GET /\.ws\?send=from%20quic HTTP/3 200")
    server.wait_for_log(r"WebSocket /ws\S*, HTTP/(1\.1|2), 1 message")


def test_caddy_serving_http3_shows_what_it_forwarded(server, certs, tmp_path):
    """The client speaks HTTP/3 to caddy; caddy speaks HTTP/2 over TLS to geventsrv."""
    port = free_port()
    site = (
        f"https://localhost:{port} {{\n\ttls {certs.server_cert} {certs.server_key}\n"
        f"\treverse_proxy 127.0.0.1:{server.port} {{\n\t\ttransport http {{\n\t\t\ttls\n"
        f"\t\t\ttls_server_name localhost\n\t\t\ttls_trusted_ca_certs {certs.ca}\n"
        "\t\t}\n\t}\n}\n"
    )
    options = "\tskip_install_trust\n\tauto_https disable_redirects\n"
    with caddy_in_front(port, tmp_path, site, options):
        response = h3client.fetch(("127.0.0.1", port), certs.ca, b"/via-caddy?x=1")
    assert response.status == 200
    assert response.header(b"server") == b"Caddy"
    seen = json.loads(bytes(response.body))
    assert seen["request"]["http_version"] == "2" and seen["tls"]["alpn"] == "h2"
    headers = dict(seen["request"]["headers"])
    assert headers["x-forwarded-proto"] == "https" and headers["x-forwarded-for"] == "127.0.0.1"
    assert seen["request"]["path"] == "/via-caddy"
