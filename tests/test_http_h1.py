"""HTTP/1.1's front over real sockets: keep-alive, pipelining, framing, 100-continue, HEAD,
refusals and bad input, as RFC 9112 says; with raw sockets and with curl."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest
from http1client import curl, exchange, read_response
from support import CLIENT_TIMEOUT, recv_until_eof


def test_keep_alive_and_pipelining_answer_in_order_on_one_connection(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        first = json.loads(read_response(sock, buffer)[2])
        sock.sendall(  # two requests in one write: pipelined
            b"GET /second HTTP/1.1\r\nHost: x\r\n\r\nGET /third HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        second = json.loads(read_response(sock, buffer)[2])
        third = json.loads(read_response(sock, buffer)[2])
    assert [r["request"]["path"] for r in (first, second, third)] == ["/first", "/second", "/third"]
    assert [r["request"]["number"] for r in (first, second, third)] == [1, 2, 3]
    assert len({r["server"]["connection"] for r in (first, second, third)}) == 1


def test_a_chunked_body_is_reassembled(http_server):
    raw = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    )
    assert json.loads(exchange(http_server, raw)[2])["body"]["text"] == "hello, world"


def test_expect_100_continue_is_answered_before_the_body_is_sent(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(b"body")
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["body"]["text"] == "body"


def test_head_has_the_headers_and_no_body(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"Content-Length: " in head
    assert rest.startswith(b"HTTP/1.1 200")  # the next response follows at once: no body
    assert buffer == bytearray()


def test_connection_close_is_honoured(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_until_eof(sock)  # the server closes after the response
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in data


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"z" * 200_000, 413),
    ],
    ids=["garbage", "no-host", "head-too-large", "body-too-large"],
)
def test_bad_requests_get_their_status_and_a_close(http_server, raw, status):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        # The server may answer before the whole body is sent; it must still be read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        data = recv_until_eof(sock)
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:200]
    assert b"Connection: close" in data
    assert exchange(http_server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


def test_a_head_sent_in_pieces_is_bounded_too(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):
            try:
                sock.sendall(b"X-Filler: " + b"f" * 1000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        data = recv_until_eof(sock)
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]


def test_curl_keep_alive_chunked_upload_continue_and_head(http_server):
    base = f"http://127.0.0.1:{http_server.port}"
    both = curl(f"{base}/one", f"{base}/two")
    first, second = (json.loads(line) for line in both.stdout.splitlines())
    assert second["request"]["number"] == 2  # curl reused the connection
    assert first["server"]["connection"] == second["server"]["connection"]
    chunked = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "via chunks", f"{base}/up")
    seen = json.loads(chunked.stdout)
    assert seen["body"]["text"] == "via chunks"
    assert ["Transfer-Encoding", "chunked"] in seen["request"]["headers"]
    expect = curl("-H", "Expect: 100-continue", "--data-binary", "x" * 2000, "-v", f"{base}/e")
    assert (
        "HTTP/1.1 100 Continue" in expect.stderr
        and json.loads(expect.stdout)["body"]["size"] == 2000
    )
    head = curl("-I", f"{base}/")
    assert head.stdout.startswith("HTTP/1.1 200 OK") and "Content-Length:" in head.stdout


def test_http_1_0_keep_alive_is_kept_when_asked(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = read_response(sock, buffer)
            assert status == 200 and headers["connection"] == "keep-alive"
        assert json.loads(body)["request"]["number"] == 2


def test_a_slowloris_gets_408_once_the_head_timeout_passes(start_server):
    server = start_server("--mode", "http", "--http-header-timeout", "1")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.2)
        data = b""
        for _ in range(100):  # a header byte every 0.2 s, well past the 1 s timeout
            try:
                sock.sendall(b"X")
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if data:
                break
        sock.settimeout(CLIENT_TIMEOUT)
        data += recv_until_eof(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    ],
    ids=["http2-version", "two-hosts", "smuggling", "obs-fold"],
)
def test_what_http_1_1_forbids_is_refused(http_server, raw, status):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw)
        data = recv_until_eof(sock)
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:200]


@pytest.mark.parametrize("half_close", [False, True])
@pytest.mark.parametrize("line", [b"GET /\r\n", b"GET /index.html\n", b"\r\nGET /x\r\n"])
def test_an_http_0_9_request_gets_505_at_once(http_server, line, half_close):
    """One line, no version: answered at once, not after the header timeout (10 s here),
    and not left unanswered by a client that half-closes after its line."""

    with socket.create_connection(http_server.address, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(line)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = recv_until_eof(sock)
    assert data.startswith(b"HTTP/1.1 505 "), data[:200]
    assert b"HTTP/0.9 is not served" in data and time.monotonic() - started < 5


def test_an_upgrade_to_something_not_served_is_answered_in_http_1_1(http_server):
    """RFC 9110 7.8: a server may ignore an Upgrade. With a body, which llhttp would take
    for the new protocol's first bytes: it is read as this request's body."""
    raw = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: spdy/3\r\n"
        b"Content-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw)
        buffer = bytearray()
        first = json.loads(read_response(sock, buffer)[2])
        second = json.loads(read_response(sock, buffer)[2])
    assert first["body"]["text"] == "hello" and ["Upgrade", "spdy/3"] in first["request"]["headers"]
    assert second["request"]["path"] == "/next"


def test_status_lines_are_made_once_with_their_reason_phrase():
    from geventsrv.http.h1 import status_line

    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"  # a code without a name
    assert status_line(404) is status_line(404)
