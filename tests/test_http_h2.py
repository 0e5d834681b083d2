"""HTTP/2 over real sockets: h2c by prior knowledge and by upgrade, h2 over TLS by ALPN,
every stream answered as HTTP/1.1 requests are; flow control, trailers, limits, shutdown.

Clients: curl, the ``h2`` library's client, and raw frames (``h2client.py``). RFC 9113's
MUSTs case by case, and the attacks, are in ``test_http_h2_conformance.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest
from h2client import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    REFUSED_STREAM,
    RawClient,
    frame,
    settings_payload,
)
from support import CLIENT_TIMEOUT, ServerProcess, recv_until_eof, require_tool, scraped

h2_config = pytest.importorskip("h2.config")
h2_connection = pytest.importorskip("h2.connection")
h2_events = pytest.importorskip("h2.events")


@pytest.fixture(scope="module")
def h2_server():
    """One server for the module's cases, checked for tracebacks at the end."""
    server = ServerProcess(
        "--port", "0", "--mode", "http", "--http-max-body", "100000", "--http-max-delay", "2",
        "--http2-max-streams", "20",
    )  # fmt: skip
    server.wait_listening()
    yield server
    server.stop()
    assert "Traceback" not in server.stderr, server.stderr


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("curl", "curl"), "-sS", "--max-time", "10", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


class LibraryClient:
    """The ``h2`` library's client on a socket: requests sent, their responses read whole."""

    def __init__(self, sock: socket.socket) -> None:
        config = h2_config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2_connection.H2Connection(config=config)
        self.sock = sock
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())

    def run(self, requests: list[tuple[str, str, list[tuple[str, str]], bytes]]) -> list[dict]:
        """Send every request at once (bodies as the windows allow); each one's status,
        headers, body and trailers, in the order sent."""
        results: dict[int, dict] = {}
        pending: dict[int, memoryview] = {}
        for method, path, headers, body in requests:
            stream = self.h2.get_next_available_stream_id()
            fields = [(":method", method), (":scheme", "http"), (":path", path),
                      (":authority", "test"), *headers]  # fmt: skip
            self.h2.send_headers(stream, fields, end_stream=not body)
            results[stream] = {"status": 0, "headers": [], "body": bytearray(), "trailers": []}
            if body:
                pending[stream] = memoryview(body)
        done: set[int] = set()
        while len(done) < len(results):
            for stream, view in list(pending.items()):
                while view:  # as much as the windows allow, a frame at a time
                    size = min(len(view), self.h2.local_flow_control_window(stream),
                               self.h2.max_outbound_frame_size)  # fmt: skip
                    if not size:
                        break
                    self.h2.send_data(stream, view[:size].tobytes(), end_stream=size == len(view))
                    pending[stream] = view = view[size:]
                if not view:
                    del pending[stream]
            self.sock.sendall(self.h2.data_to_send())
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("the server closed")
            for event in self.h2.receive_data(data):
                result = results.get(getattr(event, "stream_id", 0), {})
                if isinstance(event, h2_events.ResponseReceived):
                    result["status"] = int(dict(event.headers)[b":status"])
                    result["headers"] = [p for p in event.headers if not p[0].startswith(b":")]
                elif isinstance(event, h2_events.DataReceived):
                    result["body"] += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2_events.TrailersReceived):
                    result["trailers"] = list(event.headers)
                elif isinstance(event, h2_events.StreamEnded):
                    done.add(event.stream_id)
                elif isinstance(event, h2_events.StreamReset):
                    raise AssertionError(f"stream {event.stream_id} reset: {event.error_code}")
            self.sock.sendall(self.h2.data_to_send())
        return [results[stream] for stream in sorted(results)]


def library_client(server) -> LibraryClient:
    return LibraryClient(socket.create_connection(server.address, timeout=CLIENT_TIMEOUT))


# -- the ways in ----------------------------------------------------------------------


def test_h2c_with_prior_knowledge_reflects_the_stream_as_it_arrived(h2_server):
    result = curl("--http2-prior-knowledge", "-H", "X-Mixed: One",
                  f"http://127.0.0.1:{h2_server.port}/a?x=1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    request = seen["request"]
    assert seen["schema"] == "geventsrv.http/1.4" and request["http_version"] == "2"
    assert request["stream"] == 1 and request["number"] == 1
    assert request["pseudo_headers"] == [  # in curl's order, as they came
        [":method", "GET"], [":path", "/a?x=1"], [":scheme", "http"],
        [":authority", f"127.0.0.1:{h2_server.port}"],
    ]  # fmt: skip
    assert ["x-mixed", "One"] in request["headers"]  # names as they came: lower-case
    assert (request["path"], request["query"]) == ("/a", {"x": ["1"]})


def test_h2c_by_upgrade_answers_on_stream_1_after_reading_the_body(h2_server):
    result = curl(
        "--http2", "-i", "-d", "a body to read first", f"http://127.0.0.1:{h2_server.port}/up"
    )
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 101 Switching Protocols" in result.stdout and "HTTP/2 200" in result.stdout
    seen = json.loads(result.stdout[result.stdout.index("{") :])
    assert seen["request"]["stream"] == 1 and seen["request"]["http_version"] == "2"
    assert seen["body"]["text"] == "a body to read first"
    assert ["Upgrade", "h2c"] in seen["request"]["headers"]


def test_an_upgrade_with_a_chunked_body_is_answered_in_http_1_1(h2_server):
    """The body would have to be held whole before the switch, with no length to bound it."""
    with socket.create_connection(h2_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answers = recv_until_eof(sock)
    first, second = answers.split(b"HTTP/1.1 200 OK")[1:]
    assert json.loads(first[first.index(b"{") : first.rindex(b"}") + 1])["body"]["text"] == "hello"
    assert b'"path": "/next"' in second


def test_h2_over_tls_by_alpn_and_http_1_1_alone_with_http1_only(start_server, certs):
    for flags, expected in (((), "HTTP/2 200"), (("--http1-only",), "HTTP/1.1 200")):
        server = start_server("--mode", "http", "--tls-cert", certs.server, *flags)
        result = curl("--http2", "-i", "--cacert", certs.ca, f"https://localhost:{server.port}/")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(expected), result.stdout[:100]
        tls = json.loads(result.stdout[result.stdout.index("{") :])["tls"]
        assert tls["alpn"] == ("h2" if not flags else "http/1.1")


def test_http1_only_refuses_the_preface_and_answers_an_upgrade_in_http_1_1(start_server):
    server = start_server("--mode", "http", "--http1-only")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert recv_until_eof(sock).startswith(b"HTTP/1.1 505 ")
    result = curl("--http2", "-i", f"http://127.0.0.1:{server.port}/")
    assert result.stdout.startswith("HTTP/1.1 200"), result.stdout[:200]


# -- every stream gets what an HTTP/1.1 request gets ----------------------------------


def test_many_streams_at_once_each_its_own_reflection(h2_server):
    requests = [("POST", f"/s{n}?n={n}", [("x-n", str(n))], f"body {n}".encode())
                for n in range(15)]  # fmt: skip
    results = library_client(h2_server).run(requests)
    for n, result in enumerate(results):
        seen = json.loads(result["body"])
        assert result["status"] == 200 and seen["body"]["text"] == f"body {n}"
        assert seen["request"]["path"] == f"/s{n}" and ["x-n", str(n)] in seen["request"]["headers"]
        assert seen["request"]["stream"] == 2 * n + 1
    assert len({json.loads(r["body"])["server"]["connection"] for r in results}) == 1


def test_controls_status_header_bytes_and_head(h2_server):
    client = library_client(h2_server)
    status, generated, head = client.run([
        ("GET", "/?status=503&header=X-Test:%201", [], b""),
        ("GET", "/?bytes=200000", [], b""),
        ("HEAD", "/?bytes=10", [], b""),
    ])  # fmt: skip
    assert status["status"] == 503 and (b"x-test", b"1") in status["headers"]
    assert generated["body"] == (b"0123456789abcdef" * 12500)  # past every window
    assert (b"content-length", b"200000") in generated["headers"]
    assert head["body"] == b"" and (b"content-length", b"10") in head["headers"]


def test_http_semantics_on_streams_side_by_side(h2_server):
    """Conditional requests, ranges, compression, CORS, credentials and httpbin's paths answer
    over HTTP/2 as over HTTP/1.1, on concurrent streams of one connection."""
    preflight = [("origin", "https://app.example"), ("access-control-request-method", "PUT")]
    answers = library_client(h2_server).run([
        ("GET", "/p?etag=v1", [("if-none-match", '"v1"')], b""),
        ("GET", "/?bytes=100", [("range", "bytes=10-19")], b""),
        ("GET", "/?bytes=5000&compress=1", [("accept-encoding", "gzip")], b""),
        ("OPTIONS", "/api", preflight, b""),
        ("GET", "/?auth=bearer", [], b""),
        ("GET", "/get?a=1", [("cookie", "x=1"), ("cookie", "y=2")], b""),
        ("GET", "/cookies", [("cookie", "x=1"), ("cookie", "y=2")], b""),
        ("POST", "/dump/request", [("x-a", "1")], b"body"),
    ])  # fmt: skip
    conditional, ranged, compressed, cors, unauthorized, httpbin, cookies, dumped = answers
    assert dumped["body"] == (
        b":method: POST\r\n:scheme: http\r\n:path: /dump/request\r\n:authority: test\r\n"
        b"x-a: 1\r\n\r\nbody"
    )  # HTTP/2's fields as decoded, in order
    assert conditional["status"] == 304 and conditional["body"] == b""
    assert ranged["status"] == 206 and ranged["body"] == b"abcdef0123"
    assert (b"content-range", b"bytes 10-19/100") in ranged["headers"]
    assert (b"content-encoding", b"gzip") in compressed["headers"]
    assert gzip.decompress(compressed["body"]) == (b"0123456789abcdef" * 313)[:5000]
    assert cors["status"] == 204
    assert (b"access-control-allow-origin", b"https://app.example") in cors["headers"]
    assert unauthorized["status"] == 401
    seen = json.loads(httpbin["body"])
    assert seen["args"] == {"a": "1"} and seen["headers"]["Host"] == "test"
    assert seen["url"] == "http://test/get?a=1"
    assert json.loads(cookies["body"]) == {"cookies": {"x": "1", "y": "2"}}


def test_trailers_both_ways(h2_server):
    with RawClient(h2_server.address) as client:
        client.request(1, "/?trailer=X-Checksum:%20abc", "POST", end_stream=False)
        client.send(frame(DATA, 0, 1, b"payload"))
        client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                          client.block([("x-sent-after", "the body")])))  # fmt: skip
        response = client.response(1)
    seen = json.loads(response.body)
    assert seen["request"]["trailers"] == [["x-sent-after", "the body"]]
    assert seen["body"]["text"] == "payload"
    assert response.trailers == [(b"x-checksum", b"abc")]
    assert response.header(b"trailer") == b"X-Checksum"


def test_chunks_come_as_data_frames_spaced_as_asked(h2_server):
    with RawClient(h2_server.address) as client:
        client.request(1, "/?bytes=30&chunks=3&interval=0.3")
        arrivals = []
        while True:
            seen = client.next()
            if seen.kind == DATA and seen.stream == 1:
                arrivals.append((time.monotonic(), seen.payload))
                if seen.flags & END_STREAM:
                    break
    pieces = [payload for _, payload in arrivals if payload]
    assert pieces == [b"0123456789", b"abcdef0123", b"456789abcd"]
    times = [when for when, payload in arrivals if payload]
    assert times[2] - times[0] > 0.45  # spaced, not buffered into one


def test_echo_streams_a_large_body_back_under_flow_control(h2_server):
    body = os.urandom(3_000_000)  # past every window, many times
    (result,) = library_client(h2_server).run([("PUT", "/echo", [], body)])
    assert result["status"] == 200
    assert hashlib.sha256(result["body"]).digest() == hashlib.sha256(body).digest()


def test_server_sent_events(h2_server):
    (result,) = library_client(h2_server).run([("GET", "/sse?count=3&interval=0.1", [], b"")])
    assert result["body"].count(b"id: ") == 3
    assert (b"content-type", b"text/event-stream") in result["headers"]


def test_a_refusal_is_answered_on_its_stream_and_the_connection_goes_on(h2_server):
    client = library_client(h2_server)
    big, small = client.run([("POST", "/", [], b"x" * 200_000), ("GET", "/ok", [], b"")])
    assert big["status"] == 413 and b"--http-max-body" in big["body"]
    assert small["status"] == 200


def test_close_control_ends_the_connection_with_goaway(h2_server):
    with RawClient(h2_server.address) as client:
        client.request(1, "/?close=1")
        assert client.response(1).status == 200
        assert client.goaway() == NO_ERROR


def test_connect_makes_the_stream_a_tunnel_to_an_echo(h2_server):
    """RFC 9113 8.5: CONNECT names only :authority; after the 200 the stream's DATA is the
    tunnel, and what goes in comes back until the client ends its side."""
    client = library_client(h2_server)
    h2, sock = client.h2, client.sock
    h2.send_headers(1, [(":method", "CONNECT"), (":authority", "example.test:443")])
    h2.send_data(1, b"through the tunnel")
    sock.sendall(h2.data_to_send())
    status, echoed, ended = 0, bytearray(), False
    while not ended:
        data = sock.recv(65536)
        assert data, "the server closed"
        for event in h2.receive_data(data):
            if isinstance(event, h2_events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2_events.DataReceived):
                echoed += event.data
                h2.acknowledge_received_data(event.flow_controlled_length, 1)
                if event.data and echoed == b"through the tunnel":
                    h2.end_stream(1)  # the client's side ends: so does the echo's
            elif isinstance(event, h2_events.StreamEnded):
                ended = True
        sock.sendall(h2.data_to_send())
    assert status == 200 and echoed == b"through the tunnel"


# -- bounds ---------------------------------------------------------------------------


def test_streams_past_the_limit_are_refused_and_the_others_served(h2_server):
    with RawClient(h2_server.address) as client:
        for stream in range(1, 2 * 25, 2):  # 25 streams; the limit is 20
            client.request(stream, "/?delay=0.5")
        outcomes = [client.outcome(stream) for stream in range(1, 2 * 25, 2)]
    assert outcomes.count(f"reset {REFUSED_STREAM}") == 5
    assert outcomes.count("response 200") == 20


def test_a_client_that_grants_no_window_stalls_only_its_stream(start_server):
    server = start_server("--mode", "http", "--idle-timeout", "2")
    with RawClient(server.address, settings=settings_payload(initial_window_size=0)) as stalled:
        stalled.request(1, "/?bytes=100000")
        headers = stalled.until(HEADERS, 1)
        assert headers.stream == 1
        started = time.monotonic()
        (result,) = library_client(server).run([("GET", "/", [], b"")])  # another client
        assert result["status"] == 200 and time.monotonic() - started < 2
        outcome = stalled.outcome(1)  # reset once the stall bound passes
    assert outcome == "reset 8"  # CANCEL: no window granted


# -- shutdown, metrics, access log ------------------------------------------------------


def test_shutdown_sends_goaway_and_lets_the_stream_in_flight_finish(start_server):
    server = start_server("--mode", "http", "--http-max-delay", "3", "--access-log")
    with RawClient(server.address) as client:
        client.request(1, "/?delay=1")
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        goaway = client.until(GOAWAY)
        assert goaway.code == NO_ERROR and int.from_bytes(goaway.payload[:4], "big") == 1
        assert client.response(1).status == 200  # answered after the GOAWAY
    assert server.wait(10) == 0
    line = server.wait_for_log(r"geventsrv.access: (\S+): GET /\?delay=1 HTTP/2 200")
    assert line


def test_metrics_count_requests_by_version(start_server):
    server = start_server("--mode", "http", "--metrics", "127.0.0.1:0")
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    library_client(server).run([("GET", "/", [], b""), ("GET", "/?status=404", [], b"")])
    curl(f"http://127.0.0.1:{server.port}/")
    counts = {
        (labels["version"], labels["status_class"]): value
        for (name, sorted_labels), value in scraped(port).items()
        if name == "geventsrv_http_requests_total"
        for labels in [dict(sorted_labels)]
    }
    assert counts == {("2", "2xx"): 1, ("2", "4xx"): 1, ("1.1", "2xx"): 1}
