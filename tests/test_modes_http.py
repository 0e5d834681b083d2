"""``--mode http`` over real sockets: the reflection, HTTP/1.1's rules, bad input, and curl."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import time

import pytest
from support import CLIENT_TIMEOUT, recv_until_eof, require_tool

from geventsrv.proxyproto import ProxyHeader, encode


@pytest.fixture
def http_server(start_server):
    return start_server("--mode", "http", "--http-max-body", "100000", "--http-max-delay", "2")


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-cased headers, body) from ``buffer``, then ``sock``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise EOFError(bytes(buffer))
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    size = int(headers.get("content-length", "0"))
    while len(rest) < size:
        data = sock.recv(65536)
        if not data:
            raise EOFError(rest)
        rest += data
    del buffer[:]
    buffer += rest[size:]
    return status, headers, rest[:size]


def exchange(server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw)
        return read_response(sock, bytearray())


def test_the_reflection_shows_what_arrived_byte_for_byte(http_server):
    raw = (
        b"POST /some/path?a=1&a=2&empty= HTTP/1.1\r\nHost: example.test\r\n"
        b"X-Mixed-Case: One\r\nx-mixed-case: two\r\nContent-Type: application/json\r\n"
        b'Content-Length: 15\r\n\r\n{"k": [1, 2.5]}'
    )
    status, headers, body = exchange(http_server, raw)
    assert status == 200 and headers["content-type"] == "application/json"
    seen = json.loads(body)
    assert seen["schema"] == "geventsrv.http/1"
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
                            "json": {"k": [1, 2.5]}}  # fmt: skip
    assert seen["client"]["peer"].startswith("127.0.0.1:") and seen["tls"] is None
    assert seen["server"]["pid"] == http_server.pid


def test_a_binary_body_comes_back_as_base64(http_server):
    payload = bytes(range(256))
    raw = b"PUT /bin HTTP/1.1\r\nHost: x\r\nContent-Length: 256\r\n\r\n" + payload
    import base64

    seen = json.loads(exchange(http_server, raw)[2])
    assert seen["body"]["text"] is None and base64.b64decode(seen["body"]["base64"]) == payload


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


def test_over_tls_the_reflection_names_the_handshake(start_server, certs):
    import ssl

    server = start_server("--mode", "http", "--tls-cert", certs.server, "--tls-alpn", "http/1.1")
    context = certs.client_context(alpn=["http/1.1"])
    with (
        socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        tls = json.loads(read_response(sock, bytearray())[2])["tls"]
    assert tls["sni"] == "localhost" and tls["alpn"] == "http/1.1"
    assert tls["version"] in ("TLSv1.2", "TLSv1.3") and ssl.HAS_SNI


# -- curl, as users drive it -------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("curl", "curl"), "-sS", "--max-time", "10", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


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


def test_curl_haproxy_protocol_names_the_client_in_the_reflection(start_server):
    server = start_server("--mode", "http", "--proxy-protocol", "v1")
    result = curl("--haproxy-protocol", f"http://127.0.0.1:{server.port}/")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["proxy"]["version"] == 1 and seen["client"]["proxy"].startswith("127.0.0.1:")


def test_curl_with_a_client_certificate_over_mutual_tls(start_server, certs):
    server = start_server("--mode", "http", "--tls-cert", certs.server, "--tls-ca", certs.ca)
    result = curl(
        "--cacert", certs.ca, "--cert", certs.client, f"https://localhost:{server.port}/",
        "--resolve", f"localhost:{server.port}:127.0.0.1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tls"]["client_cert"].endswith(",CN=tester")


# -- operating it: drain, access log, metrics --------------------------------------------


def test_shutdown_closes_idle_keep_alive_connections_and_finishes_requests_under_way(
    start_server,
):
    """SIGTERM: a connection between requests is closed at once; one mid-request gets its
    answer, marked Connection: close; the server exits 0 well before the drain timeout."""
    import signal
    import threading

    server = start_server("--mode", "http", "--drain-timeout", "30")
    idle = socket.create_connection(server.address, timeout=CLIENT_TIMEOUT)
    busy = socket.create_connection(server.address, timeout=CLIENT_TIMEOUT)
    try:
        idle.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle, bytearray())[0] == 200  # now waiting between requests
        busy.sendall(b"GET /slow?delay=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # the slow request is under way
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        answer: list[bytes] = []
        reader = threading.Thread(target=lambda: answer.append(recv_until_eof(busy)))
        reader.start()
        assert recv_until_eof(idle) == b""  # closed, not answered: it asked for nothing
        reader.join(CLIENT_TIMEOUT)
        assert answer and answer[0].startswith(b"HTTP/1.1 200 OK")
        assert b"Connection: close" in answer[0]
        assert server.wait(20) == 0
        assert time.monotonic() - started < 10  # not the 30 s drain timeout
    finally:
        idle.close()
        busy.close()


def test_the_access_log_has_one_line_per_request(start_server):
    server = start_server("--mode", "http", "--access-log", "--log-format", "json")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        for path in ("/a", "/b?status=404"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            read_response(sock, buffer)
    server.wait_for_log(r'"status": 404')
    entries = [json.loads(text) for text in server.lines if '"logger": "geventsrv.access"' in text]
    assert [(e["method"], e["target"], e["status"]) for e in entries] == [
        ("GET", "/a", 200), ("GET", "/b?status=404", 404),
    ]  # fmt: skip


def test_metrics_count_requests_by_method_and_status_class(start_server):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    server = start_server("--mode", "http", "--metrics", "127.0.0.1:0")
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    for raw in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /?status=503 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"PURGE / HTTP/1.1\r\nHost: x\r\n\r\n",  # a cache's method: counted as "other"
    ):
        exchange(server, raw)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    requests = "geventsrv_http_requests_total"
    assert samples[(requests, (("method", "GET"), ("status_class", "2xx")))] == 1
    assert samples[(requests, (("method", "POST"), ("status_class", "5xx")))] == 1
    assert samples[(requests, (("method", "other"), ("status_class", "2xx")))] == 1
    assert samples[("geventsrv_http_request_duration_seconds_count", ())] == 3


# -- what a request may ask of its response ------------------------------------------------


def read_chunked(sock: socket.socket, buffer: bytearray) -> list[bytes]:
    """The chunks of a chunked body, each as sent, up to the last (empty) one."""
    pieces: list[bytes] = []
    while True:
        while b"\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise EOFError(bytes(buffer))
            buffer += data
        size_line, _, rest = bytes(buffer).partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            data = sock.recv(65536)
            if not data:
                raise EOFError(rest)
            rest += data
        assert rest[size : size + 2] == b"\r\n"
        del buffer[:]
        buffer += rest[size + 2 :]
        if size == 0:
            return pieces
        pieces.append(rest[:size])


def head_of(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str]]:
    """A response's status and lower-cased headers; what follows them stays in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise EOFError(bytes(buffer))
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[:]
    buffer += rest
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers


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


def test_http_1_0_keep_alive_is_kept_when_asked(http_server):
    with socket.create_connection(http_server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = read_response(sock, buffer)
            assert status == 200 and headers["connection"] == "keep-alive"
        assert json.loads(body)["request"]["number"] == 2


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
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    ],
    ids=["http2-version", "http2-preface", "two-hosts", "smuggling", "obs-fold"],
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
    import time

    with socket.create_connection(http_server.address, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(line)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = recv_until_eof(sock)
    assert data.startswith(b"HTTP/1.1 505 "), data[:200]
    assert b"HTTP/0.9 is not served" in data and time.monotonic() - started < 5


def test_curl_asking_to_upgrade_to_h2c_is_answered_in_http_1_1(http_server):
    result = curl("--http2", "-i", f"http://127.0.0.1:{http_server.port}/up")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")  # text mode: CRLF read as LF
    assert head.startswith("HTTP/1.1 200")
    assert ["Upgrade", "h2c"] in json.loads(body)["request"]["headers"]


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
