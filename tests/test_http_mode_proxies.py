"""The http mode behind the reverse proxies people put in front: nginx and HAProxy (http mode).

Each proxy is started for the test from a configuration written here, on loopback ports
picked now, in the foreground, and stopped after it; installed by the test setup where it
is missing (Debian's nginx-light, haproxy). Slow-marked: they run once, not on every
interpreter of the matrix.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, require_tool

pytestmark = pytest.mark.slow


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the proxy exited: {proc.communicate()[1][-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@contextlib.contextmanager
def started(argv: list[str], port: int) -> Iterator[subprocess.Popen[str]]:
    """The proxy running in the foreground until the block ends."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
        return json.loads(reply.read())


@contextlib.contextmanager
def nginx_in_front(
    upstream: int,
    directory: Path,
    extra: str = "",
    listen: str = "",
    location: str = "",
    http: str = "",
) -> Iterator[int]:
    """nginx as a reverse proxy to ``upstream``, with the ``extra`` directives in its
    location (or ``location`` for all of them), ``listen``'s parameters on its port, and
    ``http``'s directives in its ``http`` block; yields nginx's port."""
    binary = require_tool("nginx", "nginx-light")
    port = free_port()
    (directory / "logs").mkdir(exist_ok=True)
    config = directory / "nginx.conf"
    proxied = f"""
                    proxy_pass http://127.0.0.1:{upstream};
                    proxy_set_header Host $host;
                    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                    proxy_set_header X-Real-IP $remote_addr;
                    {extra}"""
    config.write_text(f"""
        worker_processes 1;
        error_log stderr warn;
        pid {directory}/nginx.pid;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {directory}/body;
            proxy_temp_path {directory}/proxy;
            fastcgi_temp_path {directory}/fastcgi;
            uwsgi_temp_path {directory}/uwsgi;
            scgi_temp_path {directory}/scgi;
            {http}
            server {{
                listen 127.0.0.1:{port} {listen};
                location / {{
                    {location or proxied}
                }}
            }}
        }}
    """)
    argv = [binary, "-p", str(directory), "-c", str(config), "-g", "daemon off;"]
    with started(argv, port):
        yield port


@pytest.fixture
def nginx(start_server, tmp_path: Path) -> Iterator[int]:
    """nginx as a reverse proxy in front of the http mode; yields nginx's port."""
    with nginx_in_front(start_server("--mode", "http").port, tmp_path) as port:
        yield port


def test_nginx_as_reverse_proxy_the_forwarded_for_it_adds_is_reflected(nginx):
    port = nginx
    seen = get(port, "/through?x=1", {"X-Forwarded-For": "203.0.113.5"})
    client = seen["client"]
    # nginx appended the address it saw (this test, on loopback) to what the client said.
    assert client["x_forwarded_for"] == ["203.0.113.5", "127.0.0.1"]
    assert client["x_real_ip"] == "127.0.0.1"
    assert client["peer"].startswith("127.0.0.1:")  # nginx's own connection
    assert seen["request"]["target"] == "/through?x=1"
    # nginx speaks HTTP/1.0 to its upstreams unless told otherwise: the reflection says so.
    assert seen["request"]["http_version"] == "1.0"


@contextlib.contextmanager
def haproxy_in_front(upstream: int, directory: Path) -> Iterator[int]:
    """HAProxy in http mode, ``send-proxy-v2`` to ``upstream``; yields HAProxy's port."""
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
    timeout tunnel 30s
frontend front
    bind 127.0.0.1:{port}
    option forwardfor
    default_backend reflectors
backend reflectors
    server reflector 127.0.0.1:{upstream} send-proxy-v2
""")
    argv = [binary, "-db", "-f", str(config)]
    with started(argv, port):
        yield port


@pytest.fixture
def haproxy_http(start_server, tmp_path: Path) -> Iterator[int]:
    """HAProxy in http mode, send-proxy-v2 to the http mode; yields HAProxy's port."""
    server = start_server("--mode", "http", "--proxy-protocol", "v2")
    with haproxy_in_front(server.port, tmp_path) as port:
        yield port


def test_haproxy_in_http_mode_with_send_proxy_v2_names_the_real_client(haproxy_http):
    port = haproxy_http
    with socket.socket() as client:
        client.settimeout(10)
        client.bind(("127.0.0.7", 0))  # a client of its own address, distinct from HAProxy's
        client.connect(("127.0.0.1", port))
        client.sendall(b"GET /behind-haproxy HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    seen = json.loads(data.partition(b"\r\n\r\n")[2])
    assert seen["proxy"]["version"] == 2 and seen["proxy"]["command"] == "PROXY"
    assert seen["client"]["proxy"].startswith("127.0.0.7:")  # the PROXY header: the client
    assert seen["client"]["x_forwarded_for"] == ["127.0.0.7"]  # option forwardfor
    assert seen["client"]["peer"].startswith("127.0.0.1:")  # the socket: HAProxy


@contextlib.contextmanager
def caddy_in_front(
    port: int, directory: Path, site: str, global_options: str = ""
) -> Iterator[None]:
    """caddy serving ``site`` (a Caddyfile site block) on ``port``, its state in
    ``directory``, with no admin endpoint."""
    binary = require_tool("caddy", "caddy")
    config = directory / "Caddyfile"
    config.write_text(
        f"{{\n\tadmin off\n{global_options}\tstorage file_system {directory}/data\n}}\n{site}"
    )
    home = {"XDG_DATA_HOME": directory, "XDG_CONFIG_HOME": directory, "HOME": directory}
    argv = ["env", *(f"{k}={v}" for k, v in home.items()), binary, "run", "--config",
            str(config), "--adapter", "caddyfile"]  # fmt: skip
    with started(argv, port):
        yield


def test_caddy_terminating_tls_and_speaking_http2_to_the_client(start_server, tmp_path):
    """curl speaks HTTP/2 over TLS to caddy; caddy speaks HTTP/1.1 to the http mode, and
    the reflection shows the X-Forwarded-* headers it added."""
    curl = require_tool("curl", "curl")
    server = start_server("--mode", "http")
    port = free_port()
    site = (
        f"https://localhost:{port} {{\n\ttls internal\n"
        f"\treverse_proxy 127.0.0.1:{server.port}\n}}\n"
    )
    global_options = "\tskip_install_trust\n\tauto_https disable_redirects\n\tlocal_certs\n"
    with caddy_in_front(port, tmp_path, site, global_options):
        result = subprocess.run(
            [curl, "-sS", "-k", "--http2", "--max-time", "10", "-w", "\n%{http_version}",
             "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/h2"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2"  # curl to caddy: HTTP/2 over TLS
    seen = json.loads(body)
    assert seen["request"]["http_version"] == "1.1"  # caddy to the server
    headers = dict(map(tuple, seen["request"]["headers"]))
    assert headers["X-Forwarded-Proto"] == "https" and seen["client"]["x_forwarded_for"]
    assert seen["tls"] is None  # TLS ended at caddy: the server saw clear text


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /lint HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /lint?status=503 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /lint HTTP/1.1\r\n\r\n",  # no Host: 400
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",  # 413
        b"GET /?bytes=100&chunks=3&interval=0&header=X-Test:%20yes HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n"
        b"echo",
        b"GET /sse?count=2&interval=0 HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["200", "503", "400", "413", "trickled", "echo", "sse"],
)
def test_responses_pass_an_http_linter(start_server, raw):
    """httplint (PyPI) reads each response as sent, byte for byte: no BAD or WARN note."""
    linter = shutil.which("httplint")
    if linter is None:
        pytest.skip("httplint is not installed (pip install httplint; the slow env has it)")
    server = start_server("--mode", "http")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    # (A HEAD response is left out: read alone, its missing body looks truncated.)
    notes = subprocess.run(
        [linter, "--input", "response", "--now"], input=response, capture_output=True, timeout=30
    ).stdout.decode()
    assert "[GOOD]" in notes, notes  # it read the response
    # A 400 draws a note about the status itself, which is the point of it.
    said_of_400 = "The server didn't understand the request."
    bad = [
        line
        for line in notes.splitlines()
        if ("[BAD]" in line or "[WARN]" in line) and said_of_400 not in line
    ]
    assert not bad, notes
