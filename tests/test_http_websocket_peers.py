"""The WebSocket echo against real peers: a browser, a Node.js client, and the proxies people
put in front. Installed by the test setup where missing (Debian's chromium, libnss3-tools,
nginx-light, haproxy; ws from npm), skipped with the reason where that cannot be.
Slow-marked: each peer starts once, not on every interpreter of the matrix.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from support import CLIENT_TIMEOUT, require_tool
from test_http_mode_proxies import haproxy_in_front, nginx_in_front
from wsframes import TEXT, FrameReader, frame, open_websocket

pytestmark = pytest.mark.slow

#: What headless Chromium needs on a closed network (no background connections to Google).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=15000", "--dump-dom",
]  # fmt: skip


def browse(url: str, home: Path) -> str:
    """The page's DOM once its script has run, as headless Chromium leaves it."""
    binary = require_tool("chromium", "chromium")
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={home / 'profile'}", url],
        capture_output=True, text=True, timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},  # HOME: its certificate store
    )  # fmt: skip
    return result.stdout


def test_chromium_opens_the_page_and_sees_its_messages_echoed(start_server, tmp_path):
    server = start_server("--mode", "http")
    url = f"http://127.0.0.1:{server.port}/.ws?send=hello&send=w%C3%B6rld&reflect=1"
    dom = browse(url, tmp_path)
    if '<span id="close-code">-</span>' in dom:
        # Headless Chromium dumps the page when its virtual time runs out, which on a busy
        # machine can come before the close handshake's last step: once more, the same.
        dom = browse(url, tmp_path)
    assert '<li class="echo">hello</li><li class="echo">wörld</li>' in dom, dom[-3000:]
    assert '<span id="close-code">1000</span>' in dom
    assert '<span id="state">closed</span>' in dom and "Connected" not in dom
    # The reflection, indented to be read: JSON over several lines, in a block of its own.
    shown = re.search(r'<li class="reflection">reflection:<pre>(.*?)</pre>', dom, re.S)
    assert shown, dom[-3000:]
    reflection = json.loads(html.unescape(shown.group(1)))
    assert shown.group(1).count("\n") > 20
    agent = dict(reflection["request"]["headers"])["User-Agent"]
    assert agent.startswith("Mozilla/5.0") and "HeadlessChrome" in agent
    assert "permessage-deflate" in dom  # Chromium offered compression, and it worked


def trusting_home(tmp_path: Path, certs) -> Path:
    """A home folder whose certificate store (NSS's, which Chromium reads) trusts the
    test CA."""
    certutil = require_tool("certutil", "libnss3-tools")
    nssdb = tmp_path / "home" / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(
        [certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "test-ca", "-i", certs.ca],
        check=True,
    )
    return tmp_path / "home"


def test_chromium_over_wss_with_a_test_ca_it_trusts(start_server, tmp_path, certs):
    server = start_server("--mode", "http", "--tls-cert", certs.server)
    url = f"https://localhost:{server.port}/.ws?send=over%20tls"
    untrusting = tmp_path / "untrusting"
    untrusting.mkdir()
    assert "over tls</li>" not in browse(url, untrusting)  # the control: no CA, no page
    dom = browse(url, trusting_home(tmp_path, certs))
    assert '<code id="url">wss://localhost:' in dom
    assert '<li class="echo">over tls</li>' in dom and '<span id="close-code">1000</span>' in dom


NODE_CLIENT = r"""
const WebSocket = require("ws");
const url = process.argv[2];
const socket = new WebSocket(url, ["node.echo"], { perMessageDeflate: true });
const got = [];
socket.on("open", () => {
  socket.send("text from node ✓");
  socket.send(Buffer.from([0, 1, 2, 255]), { binary: true });
  socket.send("frag", { fin: false });
  socket.send("mented", { fin: true });
  socket.send(Buffer.alloc(100000, 7), { binary: true, compress: true });
});
socket.on("message", (data, isBinary) => {
  got.push(isBinary ? { binary: data.toString("base64") } : { text: data.toString() });
  if (got.length === 4) socket.close(4004, "node done");
});
socket.on("close", (code, reason) => {
  console.log(JSON.stringify({ got, code, reason: reason.toString(),
    protocol: socket.protocol, extensions: socket.extensions }));
});
socket.on("error", (error) => { console.error(String(error)); process.exit(1); });
"""


def npm_install(directory: Path, *packages: str) -> str:
    """Install ``packages`` from npm into ``directory``; the path of node (a skip, with the
    reason, where Node.js, npm or its registry is missing)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip("Node.js and npm are needed for this client (Debian: nodejs, npm)")
    # npm needs a HOME (its cache and configuration), which tox does not pass; without it
    # (or without the registry's CA, NODE_EXTRA_CA_CERTS, which tox.ini passes) it waits.
    env = dict(os.environ, HOME=str(Path.home()))
    try:
        install = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(directory),
             *packages],
            capture_output=True, text=True, timeout=90, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm could not install {' '.join(packages)} from its registry within 90 s")
    if install.returncode != 0:
        pytest.skip(f"npm could not install {' '.join(packages)}: {install.stderr.strip()[-200:]}")
    return node


def test_a_node_client_exchanges_text_binary_fragmented_and_compressed(start_server, tmp_path):
    node = npm_install(tmp_path, "ws@8")
    (tmp_path / "client.js").write_text(NODE_CLIENT)
    server = start_server("--mode", "http")
    result = subprocess.run(
        [node, str(tmp_path / "client.js"), f"ws://127.0.0.1:{server.port}/node"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    import base64

    assert seen["got"] == [
        {"text": "text from node ✓"},
        {"binary": base64.b64encode(bytes([0, 1, 2, 255])).decode()},
        {"text": "fragmented"},
        {"binary": base64.b64encode(bytes([7]) * 100000).decode()},
    ]
    assert (seen["code"], seen["reason"], seen["protocol"]) == (4004, "node done", "node.echo")
    assert "permessage-deflate" in seen["extensions"]


def upgrade_through(port: int) -> bytes:
    """An upgrade request sent to ``port``; the head of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"GET /through HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.partition(b"\r\n\r\n")[0]


def test_nginx_passes_the_upgrade_only_when_configured_for_it(start_server, tmp_path):
    """Its default (HTTP/1.0 upstream, hop-by-hop headers dropped) fails the upgrade, as users
    meet it; with proxy_http_version 1.1 and the Upgrade and Connection headers it works."""
    server = start_server("--mode", "http")
    (tmp_path / "default").mkdir()
    with nginx_in_front(server.port, tmp_path / "default") as port:
        refused = upgrade_through(port)
    assert not refused.startswith(b"HTTP/1.1 101"), refused
    configured = """
                    proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection "upgrade";
    """
    (tmp_path / "configured").mkdir()
    with nginx_in_front(server.port, tmp_path / "configured", configured) as port:
        sock, reader, head = open_websocket(("127.0.0.1", port), "/through?reflect=1")
        with sock:
            reflection = json.loads(reader.next()[2])
            sock.sendall(frame(TEXT, b"through nginx"))
            assert reader.next()[1:] == (TEXT, b"through nginx")
    assert head.startswith(b"HTTP/1.1 101")
    assert reflection["client"]["x_forwarded_for"] == ["127.0.0.1"]


def test_haproxy_passes_the_upgrade_and_the_reflection_names_the_real_client(
    start_server, tmp_path
):
    server = start_server("--mode", "http", "--proxy-protocol", "v2")
    with haproxy_in_front(server.port, tmp_path) as port, socket.socket() as client:
        client.settimeout(CLIENT_TIMEOUT)
        client.bind(("127.0.0.7", 0))  # a client of its own address, distinct from HAProxy's
        client.connect(("127.0.0.1", port))
        client.sendall(
            b"GET /ws?reflect=1 HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(1)
        reader = FrameReader(client)
        reflection = json.loads(reader.next()[2])
        client.sendall(frame(TEXT, b"through haproxy"))
        assert reader.next()[1:] == (TEXT, b"through haproxy")
    assert head.startswith(b"HTTP/1.1 101")
    assert reflection["client"]["proxy"].startswith("127.0.0.7:")
    assert reflection["client"]["peer"].startswith("127.0.0.1:")
