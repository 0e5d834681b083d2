"""``--mode info``: every field of the line, over plain TCP and behind a PROXY header; then echo.

TLS fields are tested in test_tls.py, HAProxy in front in test_prologue_haproxy.py.
"""

from __future__ import annotations

import json
import socket

import pytest
from support import connect, recv_exactly

from geventsrv.proxyproto import ProxyHeader, encode

FIELDS = {"client", "peer", "local", "proxy", "tls", "worker", "pid", "host", "connection"}


def info_line(sock) -> dict:
    line = b""
    while not line.endswith(b"\n"):
        line += sock.recv(1)  # one byte at a time: nothing after the line is consumed
    return json.loads(line)


def address(pair) -> str:
    host, port = pair[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_plain_tcp(start_server, host):
    server = start_server("--mode", "info", "--host", host)
    for number in (1, 2):
        with connect(server.address) as sock:
            info = info_line(sock)
            assert set(info) == FIELDS
            assert info["client"] == info["peer"] == address(sock.getsockname())
            assert info["local"] == address(server.address)
            assert info["proxy"] is None and info["tls"] is None
            assert info["worker"] == 0
            assert info["pid"] == server.pid
            assert info["host"] == socket.gethostname()
            assert info["connection"] == number
            sock.sendall(b"then echo\n")
            assert recv_exactly(sock, 10) == b"then echo\n"


def test_behind_proxy_headers(start_server):
    server = start_server("--mode", "info", "--proxy-protocol", "any")
    v1 = ProxyHeader(1, "PROXY", "TCP4", ("198.51.100.20", 5555), ("203.0.113.5", 7007))
    v2 = ProxyHeader(
        2,
        "PROXY",
        "INET/STREAM",
        ("198.51.100.21", 6666),
        ("203.0.113.5", 7007),
        ((0x02, b"echo.example.test"), (0x05, b"\xab\xcd")),
    )
    with connect(server.address) as sock:
        sock.sendall(encode(v1))
        info = info_line(sock)
    assert info["client"] == "198.51.100.20:5555"
    assert info["proxy"] == {
        "version": 1,
        "command": "PROXY",
        "transport": "TCP4",
        "source": "198.51.100.20:5555",
        "destination": "203.0.113.5:7007",
        "tlvs": {},
    }
    with connect(server.address) as sock:
        sock.sendall(encode(v2))
        info = info_line(sock)
        assert info["peer"] == address(sock.getsockname())
    assert info["client"] == "198.51.100.21:6666"
    assert info["proxy"]["version"] == 2
    assert info["proxy"]["tlvs"] == {"authority": "echo.example.test", "unique_id": "abcd"}


def test_workers_say_which_one_answered(start_server):
    server = start_server("--mode", "info", "--workers", "2", listeners=2)
    seen = set()
    for _ in range(40):
        with connect(server.address) as sock:
            info = info_line(sock)
            seen.add((info["worker"], info["pid"]))
        if len(seen) == 2:
            break
    assert {worker for worker, _ in seen} == {1, 2}
    assert server.pid not in {pid for _, pid in seen}  # the supervisor serves nobody
