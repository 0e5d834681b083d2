"""A real proxy in front: HAProxy in TCP mode with send-proxy and send-proxy-v2.

The server must see the true client address and port, echo byte for byte
through the proxy, and answer HAProxy's health checks, which arrive with a
PROXY header of their own (version 2 sends the LOCAL command).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from support import CLIENT_TIMEOUT, echo_through, recv_exactly, require_tool, wait_until

from geventsrv.bench.haproxy import Backend, HAProxy

#: A check that passes only if the server answered the check's own PROXY
#: header with an info line naming it: the LOCAL command for version 2.
INFO_CHECKS = {
    "send-proxy": "option tcp-check\ntcp-check expect rstring '\"version\": 1,'",
    "send-proxy-v2": 'option tcp-check\ntcp-check expect rstring \'"command": "LOCAL"\'',
}


@pytest.fixture
def haproxy(tmp_path) -> Iterator[Callable[..., HAProxy]]:
    """``haproxy(server, send, checks)``: HAProxy in front of ``server``, stopped at teardown."""
    binary = require_tool("haproxy", "haproxy")
    started: list[HAProxy] = []

    def start(server, send: str, checks: str = "") -> HAProxy:
        directory = tmp_path / f"haproxy{len(started)}"
        directory.mkdir()
        options = f"{send} check inter 300ms check-send-proxy"
        proxy = HAProxy(directory, [Backend(server.address, options)], checks, binary)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


SENDS = ["send-proxy", "send-proxy-v2"]


def client_from(address: str, target) -> socket.socket:
    """A client bound to ``address`` (another loopback address: a distinct client host)."""
    sock = socket.socket()
    sock.settimeout(CLIENT_TIMEOUT)
    sock.bind((address, 0))
    sock.connect(target)
    return sock


@pytest.mark.parametrize("send", SENDS)
def test_the_server_sees_the_true_client(start_server, haproxy, send):
    server = start_server("--mode", "info", "--proxy-protocol", "any")
    proxy = haproxy(server, send, INFO_CHECKS[send])
    with client_from("127.0.0.5", proxy.front) as sock:
        info = json.loads(sock.makefile("rb").readline())
        me = f"127.0.0.5:{sock.getsockname()[1]}"
        assert info["client"] == me
        assert info["peer"].startswith("127.0.0.1:")  # HAProxy's own side
        assert info["peer"] != me
        assert info["proxy"]["source"] == me
        assert info["proxy"]["destination"] == "{}:{}".format(*proxy.front)
        assert info["proxy"]["version"] == (2 if send.endswith("v2") else 1)
        sock.sendall(b"through haproxy\n")
        assert recv_exactly(sock, 16) == b"through haproxy\n"


@pytest.mark.parametrize("send", SENDS)
def test_health_checks_are_answered(start_server, haproxy, send):
    """The check expects the server's info line about the check itself (LOCAL for v2)."""
    server = start_server("--mode", "info", "--proxy-protocol", "any")
    proxy = haproxy(server, send, INFO_CHECKS[send])
    assert wait_until(lambda: proxy.server_status() == "UP", timeout=10), proxy.server_status()
    # And the same check fails against a server that does not answer it so:
    # proof that the status above came from the server's reply.
    plain = start_server("--mode", "echo", "--proxy-protocol", "any")
    doubter = haproxy(plain, send, INFO_CHECKS[send])
    time.sleep(1.5)
    assert doubter.server_status().startswith("DOWN")


@pytest.mark.parametrize("send", SENDS)
def test_byte_exact_echo_through_haproxy(start_server, haproxy, rng, send):
    server = start_server("--proxy-protocol", "v2" if send.endswith("v2") else "v1")
    proxy = haproxy(server, send)
    payload = rng.randbytes(2 * 2**20)
    with socket.create_connection(proxy.front, timeout=CLIENT_TIMEOUT) as sock:
        assert echo_through(sock, payload, rng) == payload
    assert proxy.server_status().startswith("UP")
