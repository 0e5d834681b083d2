"""gRPC on the http mode over real sockets: grpcio's own client against the echo service and
health (stubs made from the shipped ``echo.proto`` with grpcio-tools), and the ``h2``
library's client for what grpcio would never send (bad framing, a compressed flag with no
encoding, a decompression bomb, a method that is not served)."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from support import CLIENT_TIMEOUT, ServerProcess, scraped

grpc = pytest.importorskip("grpc")
protoc = pytest.importorskip("grpc_tools.protoc")
health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
from test_http_h2 import LibraryClient  # noqa: E402  (after the skips)

import geventsrv.http  # noqa: E402

PROTO = Path(geventsrv.http.__file__).with_name("echo.proto")
ECHO = "/geventsrv.echo.v1.Echo/"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """The Python modules grpcio-tools makes of the shipped ``echo.proto``."""
    out = tmp_path_factory.mktemp("stubs")
    assert protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={out}",
                        f"--grpc_python_out={out}", str(PROTO)]) == 0  # fmt: skip
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc")
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def grpc_server():
    server = ServerProcess("--port", "0", "--mode", "http", "--grpc-max-message", "1000000",
                           "--http-max-delay", "5", "--access-log")  # fmt: skip
    server.wait_listening()
    yield server
    server.stop()
    assert "Traceback" not in server.stderr, server.stderr


@pytest.fixture
def echo(grpc_server, stubs):
    pb2, pb2_grpc = stubs
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield pb2, pb2_grpc.EchoStub(channel)


# -- grpcio's client: each kind of call -----------------------------------------------------


def test_unary_echoes_the_message_byte_for_byte(echo):
    pb2, stub = echo
    for size in (0, 1, 16384, 65535, 900_000):
        sent = pb2.EchoMessage(message=f"size {size}", payload=os.urandom(size))
        assert stub.Unary(sent, timeout=CLIENT_TIMEOUT) == sent


def test_server_stream_sends_count_copies_interval_apart(echo):
    pb2, stub = echo
    sent = pb2.EchoMessage(message="again")
    started = time.monotonic()
    asked = [("x-echo-count", "4"), ("x-echo-interval", "0.1")]
    got = list(stub.ServerStream(sent, timeout=CLIENT_TIMEOUT, metadata=asked))
    assert got == [sent] * 4 and time.monotonic() - started >= 0.3
    assert len(list(stub.ServerStream(sent, timeout=CLIENT_TIMEOUT))) == 10  # the default


def test_client_stream_answers_every_message_as_one(echo):
    pb2, stub = echo
    sent = [pb2.EchoMessage(message=str(n), payload=bytes([n]) * n) for n in range(20)]
    assert list(stub.ClientStream(iter(sent), timeout=CLIENT_TIMEOUT).messages) == sent


def test_bidi_echoes_each_message_as_it_arrives(echo):
    """Each answer comes before the next message is sent: an echo, not a collector."""
    pb2, stub = echo
    outbox: list = []
    ready = threading.Event()

    def messages():
        for n in range(5):
            message = pb2.EchoMessage(message=f"m{n}")
            outbox.append(message)
            yield message
            assert ready.wait(CLIENT_TIMEOUT)
            ready.clear()

    got = []
    for answer in stub.Bidi(messages(), timeout=CLIENT_TIMEOUT):
        got.append(answer)
        ready.set()
    assert got == outbox


def test_many_calls_at_once_on_one_channel(echo):
    from concurrent.futures import ThreadPoolExecutor

    pb2, stub = echo
    sent = [pb2.EchoMessage(message=str(n), payload=os.urandom(1000)) for n in range(200)]
    with ThreadPoolExecutor(8) as pool:
        futures = [stub.Unary.future(message, timeout=CLIENT_TIMEOUT) for message in sent]
        got = list(pool.map(lambda future: future.result(), futures))
    assert got == sent


def test_reflect_shows_the_metadata_in_order_and_the_pseudo_headers(echo):
    pb2, stub = echo
    answer = stub.Reflect(pb2.EchoMessage(message="who"), timeout=CLIENT_TIMEOUT,
                          metadata=[("x-first", "1"), ("x-second", "2"),
                                    ("x-bin", b"\x00\xff")])  # fmt: skip
    seen = json.loads(answer.json)
    request = seen["request"]
    assert request["http_version"] == "2" and request["method"] == "POST"
    assert dict(request["pseudo_headers"])[":path"] == ECHO + "Reflect"
    names = [name for name, _ in request["headers"]]
    assert names.index("x-first") < names.index("x-second")
    assert dict(request["headers"])["x-bin"] == "AP8"  # binary metadata, base64 on the wire
    assert dict(request["headers"])["content-type"] == "application/grpc"
    assert seen["server"]["pid"] > 0


# -- controls, deadlines, compression, bounds -----------------------------------------------


def test_the_status_asked_for_ends_the_call_with_its_message(echo):
    pb2, stub = echo
    with pytest.raises(grpc.RpcError) as caught:
        asked = [("x-echo-grpc-status", "7"), ("x-echo-grpc-message", "not you")]
        stub.Unary(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT, metadata=asked)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "not you"


def test_headers_and_trailers_asked_for_come_as_metadata(echo):
    pb2, stub = echo
    _, call = stub.Unary.with_call(pb2.EchoMessage(message="m"), timeout=CLIENT_TIMEOUT,
                                   metadata=[("x-echo-header", "x-h: 1"),
                                             ("x-echo-trailer", "x-t: 2")])  # fmt: skip
    assert ("x-h", "1") in call.initial_metadata()
    assert ("x-t", "2") in call.trailing_metadata()


def test_bytes_asks_for_a_payload_of_that_size(echo):
    pb2, stub = echo
    answer = stub.Unary(pb2.EchoMessage(message="small"), timeout=CLIENT_TIMEOUT,
                        metadata=[("x-echo-bytes", "70000")])  # fmt: skip
    assert len(answer.payload) == 70000 and answer.payload.startswith(b"0123456789abcdef")


def test_an_http_status_asked_for_is_mapped_by_the_client(echo):
    pb2, stub = echo
    with pytest.raises(grpc.RpcError) as caught:
        stub.Unary(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT, metadata=[("x-echo-status", "503")])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # as gRPC maps HTTP 503


def test_the_deadline_passing_ends_the_call(echo, grpc_server):
    pb2, stub = echo
    with pytest.raises(grpc.RpcError) as caught:
        stub.Unary(pb2.EchoMessage(), timeout=0.3, metadata=[("x-echo-delay", "2")])
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server ended it too, by its own timer, not only the client.
    grpc_server.wait_for_log(r"gRPC /geventsrv.echo.v1.Echo/Unary DEADLINE_EXCEEDED")


def test_gzip_both_ways(echo):
    pb2, stub = echo
    sent = pb2.EchoMessage(message="z" * 100_000)
    assert stub.Unary(sent, timeout=CLIENT_TIMEOUT, compression=grpc.Compression.Gzip) == sent


def test_a_message_over_the_bound_is_resource_exhausted(echo):
    pb2, stub = echo
    with pytest.raises(grpc.RpcError) as caught:
        stub.Unary(pb2.EchoMessage(payload=b"x" * 1_000_001), timeout=CLIENT_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--grpc-max-message" in caught.value.details()


def test_an_unknown_method_is_unimplemented(grpc_server):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        method = channel.unary_unary("/no.such.Service/Call")
        with pytest.raises(grpc.RpcError) as caught:
            method(b"", timeout=CLIENT_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- what grpcio would never send: the h2 library's client, framed by hand ------------------


def raw_call(server, path: str, body: bytes, extra: list[tuple[str, str]] | None = None) -> dict:
    """One call as an HTTP/2 request; its status, headers, body and trailers, as bytes."""
    headers = [("content-type", "application/grpc"), ("te", "trailers"), *(extra or [])]
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        return LibraryClient(sock).run([("POST", path, headers, body)])[0]


def grpc_status(answer: dict) -> tuple[int, str]:
    """The call's grpc-status and grpc-message, from its trailers (or a trailers-only head)."""
    fields = dict(answer["trailers"] or answer["headers"])
    return int(fields[b"grpc-status"]), fields.get(b"grpc-message", b"").decode()


def message(data: bytes, flag: int = 0) -> bytes:
    return bytes((flag,)) + len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    ("body", "extra", "code", "says"),
    [
        (b"\x02\0\0\0\x01x", [], 13, "flag of 2"),
        (message(b"whole")[:-1], [], 13, "inside a message"),
        (message(gzip.compress(b"packed"), flag=1), [], 13, "no grpc-encoding"),
        (message(b"not gzip", flag=1), [("grpc-encoding", "gzip")], 13, "does not decompress"),
        (message(gzip.compress(b"\0" * 2_000_000), flag=1), [("grpc-encoding", "gzip")], 8,
         "decompressed"),
        (message(b"x"), [("grpc-encoding", "snappy")], 12, "not served"),
        (message(b"x"), [("grpc-timeout", "forever")], 3, "grpc-timeout"),
        (message(b"one") + message(b"two"), [], 13, "exactly one message"),
        (message(b"x"), [("x-echo-grpc-status", "99")], 3, "0 to 16"),
    ],
    ids=["flag-2", "cut-short", "compressed-no-encoding", "bad-gzip", "gzip-bomb",
         "unknown-encoding", "bad-timeout", "two-on-unary", "bad-status-control"],
)  # fmt: skip
def test_a_malformed_call_gets_its_status_and_costs_only_its_stream(
    grpc_server, body, extra, code, says
):
    answer = raw_call(grpc_server, ECHO + "Unary", body, extra)
    assert answer["status"] == 200
    got, text = grpc_status(answer)
    assert (got, says in text) == (code, True), text
    assert raw_call(grpc_server, ECHO + "Unary", message(b"\x0a\x02ok"))["body"] == message(
        b"\x0a\x02ok"
    )


def test_a_gzip_call_is_answered_in_gzip(grpc_server):
    sent = b"\x0a\x05hello" * 100
    answer = raw_call(grpc_server, ECHO + "Unary", message(gzip.compress(sent), flag=1),
                      [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")])  # fmt: skip
    assert dict(answer["headers"])[b"grpc-encoding"] == b"gzip"
    body = bytes(answer["body"])
    assert body[0] == 1 and gzip.decompress(body[5:]) == sent
    assert grpc_status(answer) == (0, "")


def test_a_get_is_not_a_call(grpc_server):
    with socket.create_connection(grpc_server.address, timeout=CLIENT_TIMEOUT) as sock:
        get = ("GET", ECHO + "Unary", [("content-type", "application/grpc")], b"")
        answer = LibraryClient(sock).run([get])[0]
    assert answer["status"] == 405


# -- health, tied to readiness; metrics -----------------------------------------------------


def test_health_check_serves_and_names_unknown_services(grpc_server):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "geventsrv.echo.v1.Echo"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_sees_not_serving_as_soon_as_the_server_is_told_to_stop(start_server):
    """With --shutdown-delay the server keeps accepting after SIGTERM, not ready: a front's
    gRPC health check sees NOT_SERVING then, before any connection is refused."""
    server = start_server("--mode", "http", "--shutdown-delay", "1", "--drain-timeout", "10")
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=20)
        statuses = [next(watch).status]
        server.send_signal(signal.SIGTERM)
        statuses.append(next(watch).status)
        with pytest.raises(grpc.RpcError) as caught:
            next(watch)
    serving = health_pb2.HealthCheckResponse
    assert statuses == [serving.SERVING, serving.NOT_SERVING]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the drain ends the watch
    assert server.wait(20) == 0


def test_metrics_count_calls_by_method_and_status(start_server, stubs):

    pb2, pb2_grpc = stubs
    server = start_server("--mode", "http", "--metrics", "127.0.0.1:0")
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb2_grpc.EchoStub(channel)
        for _ in range(3):
            stub.Unary(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT)
        with pytest.raises(grpc.RpcError):
            stub.Unary(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT,
                       metadata=[("x-echo-grpc-status", "5")])  # fmt: skip
    samples = scraped(port)
    unary = ("method", ECHO + "Unary")
    assert samples[("geventsrv_grpc_calls_total", (("grpc_status", "OK"), unary))] == 3
    assert samples[("geventsrv_grpc_calls_total", (("grpc_status", "NOT_FOUND"), unary))] == 1
