"""The application over real sockets: the reflection, the controls, ``/echo``, ``/sse``,
the page and CONNECT, as every HTTP version serves them."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import time

import pytest
from http1client import exchange, head_of, read_chunked, read_response
from support import CLIENT_TIMEOUT, recv_until_eof, require_tool

from geventsrv.proxyproto import ProxyHeader, encode


def test_the_reflection_shows_what_arrived_byte_for_byte(http_server):
    raw = (
        b"POST /some/path?a=1&a=2&empty= HTTP/1.1\r\nHost: example.test\r\n"
        b"X-Mixed-Case: One\r\nx-mixed-case: two\r\nContent-Type: application/json\r\n"
        b'Content-Length: 15\r\n\r\n{"k": [1, 2.5]}'
    )
    status, headers, body = exchange(http_server, raw)
    assert status == 200 and headers["content-type"] == "application/json"
    seen = json.loads(body)
    assert seen["schema"] == "geventsrv.http/1.4"
    request = seen["request"]
    assert (request["method"], request["target"], request["path"]) == (
        "POST", "/some/path?a=1&a=2&empty=", "/some/path",
    )  # fmt: skip
    assert request["query"] == {"a": ["1", "2"], "empty": [""]}
    assert request["http_version"] == "1.1" and request["number"] == 1
    assert request["headers"][:3] == [
        ["Host", "example.test"], ["X-Mixed-Case", "One"], ["x-mixed-case", "two"],
    ]  # fmt: skip
    assert seen["body"] == {"size": 15, "text": '{"k": [1, 2.5]}', "base64": None,
                            "json": {"k": [1, 2.5]}, "encoding": None, "form": None}  # fmt: skip
    assert seen["client"]["peer"].startswith("127.0.0.1:") and seen["tls"] is None
    assert seen["server"]["pid"] == http_server.pid


def test_a_binary_body_comes_back_as_base64(http_server):
    payload = bytes(range(256))
    raw = b"PUT /bin HTTP/1.1\r\nHost: x\r\nContent-Length: 256\r\n\r\n" + payload
    import base64

    seen = json.loads(exchange(http_server, raw)[2])
    assert seen["body"]["text"] is None and base64.b64decode(seen["body"]["base64"]) == payload


@pytest.mark.parametrize("how", ["query", "header"])
def test_status_delay_and_close_controls(http_server, how):
    def ask(controls: dict[str, str]) -> bytes:
        if how == "query":
            target = "/c?" + "&".join(f"{k}={v}" for k, v in controls.items())
            return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        lines = "".join(f"X-Echo-{k}: {v}\r\n" for k, v in controls.items())
        return f"GET /c HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()

    assert exchange(http_server, ask({"status": "503"}))[0] == 503
    started = time.monotonic()
    assert exchange(http_server, ask({"delay": "0.3"}))[0] == 200
    assert time.monotonic() - started >= 0.3
    status, _, body = exchange(http_server, ask({"delay": "5"}))  # over --http-max-delay 2
    assert status == 400 and b"--http-max-delay" in body
    assert exchange(http_server, ask({"status": "99"}))[0] == 400
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(ask({"close": "1"}))
        assert b"Connection: close" in recv_until_eof(sock)


def test_every_source_of_the_client_address_side_by_side(start_server):
    server = start_server("--mode", "http", "--proxy-protocol", "v1")
    header = encode(ProxyHeader(1, "PROXY", "TCP4", ("198.51.100.7", 4321), ("127.0.0.1", 80)))
    raw = header + (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.1, 10.0.0.2\r\n"
        b'X-Forwarded-For: 10.0.0.3\r\nForwarded: for="[2001:db8::1]";proto=https;by=10.0.0.9\r\n'
        b"X-Real-IP: 203.0.113.1\r\n\r\n"
    )
    client = json.loads(exchange(server, raw)[2])["client"]
    assert client["proxy"] == "198.51.100.7:4321"
    assert client["peer"].startswith("127.0.0.1:")
    assert client["x_forwarded_for"] == ["203.0.113.1", "10.0.0.2", "10.0.0.3"]
    assert client["forwarded"] == [{"for": "[2001:db8::1]", "proto": "https", "by": "10.0.0.9"}]
    assert client["x_real_ip"] == "203.0.113.1"


@pytest.mark.parametrize("how", ["query", "header"])
def test_generated_bytes_and_extra_headers(http_server, how):
    if how == "query":
        raw = (
            b"GET /?bytes=70000&header=X-Extra:%20one&header=Content-Type:%20text/x-test "
            b"HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    else:
        raw = (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Echo-Bytes: 70000\r\nX-Echo-Header: X-Extra: one\r\n"
            b"X-Echo-Header: Content-Type: text/x-test\r\n\r\n"
        )
    status, headers, body = exchange(http_server, raw)
    assert status == 200 and len(body) == 70000 == int(headers["content-length"])
    assert body == (b"0123456789abcdef" * 4375)[:70000]
    assert headers["x-extra"] == "one" and headers["content-type"] == "text/x-test"


@pytest.mark.parametrize(
    ("control", "said"),
    [
        ("header=Content-Length:%201", "frames the message"),
        ("header=Transfer-Encoding:%20chunked", "frames the message"),
        ("header=X-Split:%20a%0d%0aSet-Cookie:%20b", "CR, LF or NUL"),
        ("header=Bad%20Name:%20v", "token"),
        ("bytes=-1", "bytes must be a whole number"),
        ("chunks=5&interval=1", "--http-max-delay"),  # 4 waits of 1 s, over the 2 s allowed
        ("count=0", "count must be"),
    ],
)
def test_controls_that_would_break_the_response_are_refused(http_server, control, said):
    status, headers, body = exchange(
        http_server, f"GET /?{control} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert status == 400 and said in json.loads(body)["error"]
    assert "set-cookie" not in headers


def test_a_trickled_response_comes_in_the_chunks_asked_for(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /t?chunks=3&interval=0.05 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers = head_of(sock, buffer)
        pieces = read_chunked(sock, buffer)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert len(pieces) == 3 and json.loads(b"".join(pieces))["request"]["path"] == "/t"
        sock.sendall(b"GET /?bytes=10&chunks=20&interval=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        head_of(sock, buffer)  # the connection was kept: fewer bytes than chunks, one each
        assert read_chunked(sock, buffer) == [bytes([c]) for c in b"0123456789"]
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /?bytes=10&chunks=2&interval=0 HTTP/1.0\r\n\r\n")
        data = recv_until_eof(sock)  # HTTP/1.0 has no chunks: the body ends with the connection
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head
    assert body == b"0123456789"


def test_echo_sends_the_body_back_as_it_arrives(http_server, tmp_path):
    """30 MiB through curl, byte for byte, both framings; the server holds one read of it."""
    import hashlib

    from geventsrv.procstats import rss_bytes

    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(1 << 20) * 30)
    url = f"http://127.0.0.1:{http_server.port}/echo"
    exchange(http_server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    before = rss_bytes(http_server.pid)
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        result = subprocess.run(
            [require_tool("curl", "curl"), "-sS", "--max-time", "60", "--data-binary",
             f"@{upload}", "-H", "Content-Type: application/x-test", *extra, url],
            capture_output=True, timeout=90,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (
            hashlib.sha256(result.stdout).digest() == hashlib.sha256(upload.read_bytes()).digest()
        )
    assert rss_bytes(http_server.pid) - before < 8 << 20  # not the 30 MiB


def test_echo_of_a_request_without_a_body_and_with_head(http_server):
    status, headers, body = exchange(http_server, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, headers["content-length"], body) == (200, "0", b"")
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"HEAD /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /echo?status=201 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
        )
        buffer = bytearray()
        assert head_of(sock, buffer)[1]["content-length"] == "3"  # HEAD: no body follows
        status, headers, body = read_response(sock, buffer)
    assert (status, body) == (201, b"xyz")


def test_server_sent_events_one_per_chunk_spaced_and_resumable(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /sse?count=3&interval=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers = head_of(sock, buffer)
        events = read_chunked(sock, buffer)
        assert status == 200 and headers["content-type"] == "text/event-stream"
        assert [event.split(b"\n")[0] for event in events] == [b"id: 1", b"id: 2", b"id: 3"]
        assert all(event.endswith(b"\n\n") for event in events)  # each event flushed alone
        times = [json.loads(event.split(b"data: ")[1])["time"] for event in events]
        assert all(later - earlier >= 0.19 for earlier, later in itertools.pairwise(times))
        sock.sendall(b"GET /sse?count=3&interval=0 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\n\r\n")
        head_of(sock, buffer)
        assert [e.split(b"\n")[0] for e in read_chunked(sock, buffer)] == [b"id: 2", b"id: 3"]
        sock.sendall(b"GET /sse?count=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 3\r\n\r\n")
        assert head_of(sock, buffer)[0] == 204  # a reconnecting EventSource is told to stop


def test_shutdown_ends_an_event_stream_properly(start_server):
    import signal

    server = start_server("--mode", "http", "--drain-timeout", "30")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /sse?count=1000&interval=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        head_of(sock, buffer)
        while b"id: 1\n" not in buffer:
            buffer += sock.recv(65536)
        server.send_signal(signal.SIGTERM)
        events = read_chunked(sock, buffer)  # ends with the last chunk, not a cut
        assert len(events) < 1000 and recv_until_eof(sock) == b""
    assert server.wait(20) == 0


# -- CONNECT: a tunnel whose far end is an echo ---------------------------------------------


def test_connect_opens_a_tunnel_to_an_echo_with_a_2xx_that_has_no_body(http_server):
    """RFC 9110 9.3.6: a 2xx to CONNECT has no content and no Content-Length; what follows
    is the tunnel's. Its far end is an echo, never the host named."""
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\nearly")
        buffer = bytearray()
        status, headers = head_of(sock, buffer)
        assert status == 200 and "content-length" not in headers
        assert "transfer-encoding" not in headers
        while len(buffer) < 5:
            buffer += sock.recv(100)
        assert bytes(buffer) == b"early"  # sent with the request, echoed through the tunnel
        for size in (1, 1000, 300_000):
            payload = os.urandom(size)
            sock.sendall(payload)
            got = b""
            while len(got) < size:
                got += sock.recv(65536)
            assert got == payload
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b""  # the tunnel ends when the client ends its side


def test_connect_through_socat_as_a_forward_proxy_client(http_server):
    """socat's PROXY address asks for a tunnel with CONNECT, then relays its input."""
    socat = require_tool("socat", "socat")
    payload = os.urandom(200_000)
    result = subprocess.run(
        [socat, "-t", "5", "-", f"PROXY:127.0.0.1:example.test:443,proxyport={http_server.port}"],
        input=payload, capture_output=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload


@pytest.mark.parametrize("target", [b"example.test", b"/path", b"example.test:port"])
def test_connect_to_something_other_than_host_and_port_is_400(http_server, target):
    raw = b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % target
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw)
        assert recv_until_eof(sock).startswith(b"HTTP/1.1 400 ")


def test_connect_refused_as_asked_answers_the_reflection_and_goes_on(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n"
            b"X-Echo-Status: 403\r\n\r\n"
        )
        buffer = bytearray()
        status, _, body = read_response(sock, buffer)
        assert status == 403
        assert json.loads(body)["request"]["method"] == "CONNECT"
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(read_response(sock, buffer)[2])["request"]["path"] == "/after"


def test_format_raw_answers_the_head_exactly_as_it_arrived_then_the_body(http_server):
    head = (b"POST /x?format=raw HTTP/1.1\r\nHost:   spaced  \r\nX-Tab:\tv \r\n"
            b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n")  # fmt: skip
    status, headers, body = exchange(http_server, head + b"\x1f\x8b\x00\x01")
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
    assert body == head + b"\x1f\x8b\x00\x01"  # the body as read: not decoded


def test_after_a_chunked_body_in_one_read_the_next_head_is_refused_not_guessed(http_server):
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(chunked + b"GET /?format=raw HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        assert read_response(sock, buffer)[0] == 200
        status, _, body = read_response(sock, buffer)
        assert status == 501 and b"chunked" in body
