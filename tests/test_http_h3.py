"""HTTP/3 over real QUIC: the reflection, every control, ``/echo`` and ``/sse``, WebSocket over
HTTP/3 (RFC 9220), ``Alt-Svc`` on the TCP versions, the bounds, the drain on a stop.

The client is aioquic's own (``h3client.py``), over UDP on loopback, against the real server
process with a trustme certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from support import CLIENT_TIMEOUT, scraped
from wsframes import CLOSE, TEXT, close_payload, frame

from geventsrv.quicpath import BASE_SIZE as BASE_DATAGRAM
from geventsrv.quicpath import MAX_SIZE as MAX_DATAGRAM

h3client = pytest.importorskip("h3client")  # aioquic, the client


def http3_server(start_server, certs, *flags: str):
    return start_server("--mode", "http", "--tls-cert", certs.server, "--http3",
                        "--http-max-delay", "3", *flags)  # fmt: skip


@pytest.fixture
def server(start_server, certs):
    return http3_server(start_server, certs)


def reflect(response) -> dict:
    assert response.status == 200, (response.status, bytes(response.body))
    return json.loads(bytes(response.body))


def test_the_reflection_says_http3_its_stream_quic_and_the_udp_client(server, certs):
    async def work(client):
        first = client.request(b"GET", b"/first?a=1", [(b"x-test", b"one")], None)[1]
        second = client.request(b"POST", b"/second", [(b"content-type", b"text/plain")],
                                b"hello")[1]  # fmt: skip
        await asyncio.gather(first.done.wait(), second.done.wait())
        return first, second

    first, second = h3client.run(server.address, certs.ca, work)
    one, two = reflect(first), reflect(second)
    assert one["schema"] == "geventsrv.http/1.4"
    request = one["request"]
    assert request["http_version"] == "3" and request["stream"] == 0 and request["number"] == 1
    assert request["path"] == "/first" and request["query"] == {"a": ["1"]}
    assert ["x-test", "one"] in request["headers"]
    assert [name for name, _ in request["pseudo_headers"]] == [
        ":method", ":scheme", ":authority", ":path"]  # fmt: skip
    assert two["request"]["stream"] == 4 and two["request"]["number"] == 2
    assert two["body"]["text"] == "hello"
    tls = one["tls"]
    assert tls["alpn"] == "h3" and tls["version"] == "TLSv1.3" and tls["cipher"].startswith("TLS_")
    assert tls["quic"]["version"] == 1 and len(tls["quic"]["connection_id"]) == 16
    assert BASE_DATAGRAM <= tls["quic"]["datagram_size"] <= MAX_DATAGRAM
    assert one["tls"] == two["tls"]  # one connection
    assert one["client"]["peer"].startswith("127.0.0.1:")
    assert one["server"]["local"] == f"127.0.0.1:{server.port}"
    assert first.header(b"content-length") == str(len(first.body)).encode()


def https_head(server, certs) -> bytes:
    """The head of an HTTP/1.1 answer over TLS from ``server``."""
    context = certs.client_context(alpn=["http/1.1"])
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:  # fmt: skip
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(65536)
    return head


def test_the_tcp_versions_advertise_http3_over_tls_only(start_server, certs):
    server = http3_server(start_server, certs)
    head = https_head(server, certs)
    assert f'\r\nAlt-Svc: h3=":{server.port}"; ma=86400\r\n'.encode() in head
    h2 = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", certs.ca, "-D", "-", "-o", os.devnull,
         "--max-time", "10", f"https://localhost:{server.port}/"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if h2.returncode == 0:  # curl is on the machine (the h2 tests install it)
        assert h2.stdout.startswith("HTTP/2 200")
        assert f'alt-svc: h3=":{server.port}"; ma=86400' in h2.stdout
    plain = start_server("--mode", "http")
    with socket.create_connection(plain.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"Alt-Svc" not in sock.recv(65536)


def test_alt_svc_names_the_port_clients_reach_when_one_is_given(start_server, certs):
    server = http3_server(start_server, certs, "--http3-alt-svc-port", "443")
    head = https_head(server, certs)
    assert b'\r\nAlt-Svc: h3=":443"; ma=86400\r\n' in head
    # HTTP/3 itself is still on the listening port.
    response = h3client.fetch(server.address, certs.ca, b"/")
    assert reflect(response)["request"]["http_version"] == "3"


def test_echo_streams_a_large_upload_back_whole(server, certs):
    body = os.urandom(3 << 20)
    response = h3client.fetch(server.address, certs.ca, b"/echo", b"POST", body=body)
    assert response.status == 200
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(body).digest()


def test_echo_answers_piece_by_piece_while_the_client_still_sends(server, certs):
    """The echo is streamed: each piece comes back before the client sends the next."""

    async def work(client):
        stream_id, response = client.request(b"POST", b"/echo", [], b"first;", end=False)
        assert await asyncio.wait_for(response.pieces.get(), CLIENT_TIMEOUT) == b"first;"
        client.http.send_data(stream_id, b"second", end_stream=True)
        client.transmit()
        await response.done.wait()
        return response

    response = h3client.run(server.address, certs.ca, work)
    assert bytes(response.body) == b"first;second"


def test_sse_and_the_controls_work_as_over_tcp(server, certs):
    events = h3client.fetch(server.address, certs.ca, b"/sse?count=3&interval=0.01")
    assert events.status == 200 and events.header(b"content-type").startswith(b"text/event-stream")
    assert bytes(events.body).count(b"\nid: ") + bytes(events.body).startswith(b"id: ") == 3
    teapot = h3client.fetch(server.address, certs.ca, b"/?status=418&header=x-mine:yes")
    assert teapot.status == 418 and teapot.header(b"x-mine") == b"yes"
    head = h3client.fetch(server.address, certs.ca, b"/?bytes=1000", b"HEAD")
    assert head.status == 200 and head.header(b"content-length") == b"1000" and not head.body
    sized = h3client.fetch(server.address, certs.ca, b"/?bytes=100000")
    assert len(sized.body) == 100000
    gzipped = h3client.fetch(server.address, certs.ca, b"/?bytes=5000&compress=1",
                             headers=[(b"accept-encoding", b"gzip")])  # fmt: skip
    assert gzipped.header(b"content-encoding") == b"gzip"
    import gzip

    assert len(gzip.decompress(bytes(gzipped.body))) == 5000
    trailers = h3client.fetch(server.address, certs.ca, b"/?trailer=x-check:done&bytes=10")
    assert (b"x-check", b"done") in trailers.trailers


def test_a_header_list_past_the_bound_is_431_and_the_connection_goes_on(start_server, certs):
    server = http3_server(start_server, certs, "--http-max-head", "2048")

    async def work(client):
        big = client.request(b"GET", b"/", [(b"x-big", b"y" * 4000)], None)[1]
        await big.done.wait()
        after = client.request(b"GET", b"/", [], None)[1]
        await after.done.wait()
        return big, after

    big, after = h3client.run(server.address, certs.ca, work)
    assert big.status == 431 and after.status == 200


def test_a_client_cancelling_its_request_costs_only_that_stream(server, certs):
    async def work(client):
        stream_id, _ = client.request(b"GET", b"/?delay=2", [], None)
        await asyncio.sleep(0.2)
        client._quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
        client.transmit()
        after = client.request(b"GET", b"/", [], None)[1]
        await after.done.wait()
        return after

    assert h3client.run(server.address, certs.ca, work).status == 200


def test_credit_moves_with_what_the_application_reads(start_server, certs):
    """A body sent to a request that waits before it reads: the server grants its stream
    window, no more, until it reads (aioquic alone would double it as bytes arrive)."""
    window = 65536
    server = http3_server(start_server, certs, "--http2-window", str(window),
                          "--http-max-body", str(2 << 20))  # fmt: skip

    async def work(client):
        stream_id, response = client.request(b"POST", b"/?delay=1.5", [], None, end=False)
        client.http.send_data(stream_id, b"x" * (2 << 20), end_stream=True)
        client.transmit()
        await asyncio.sleep(1.0)  # the request still sleeps: nothing read yet
        granted = client._quic._streams[stream_id].max_stream_data_remote
        await response.done.wait()
        return granted, response

    granted, response = h3client.run(server.address, certs.ca, work)
    assert granted <= window
    assert reflect(response)["body"]["size"] == 2 << 20  # and then all of it, as read


def test_websocket_over_http3_echoes_as_over_http1(server, certs):
    """RFC 9220: an extended CONNECT with :protocol websocket opens the echo on the stream."""

    async def work(client):
        stream_id, response = client.request(
            b"CONNECT", b"websocket", [(b"sec-websocket-version", b"13")], None, end=False
        )
        while response.status == 0:
            await asyncio.sleep(0.01)
        client.http.send_data(stream_id, frame(TEXT, b"over h3"), end_stream=False)
        client.transmit()
        echoed = await asyncio.wait_for(response.pieces.get(), CLIENT_TIMEOUT)
        client.http.send_data(stream_id, frame(CLOSE, close_payload(4000, b"bye")), end_stream=True)
        client.transmit()
        await response.done.wait()
        return client.http.received_settings or {}, response, echoed

    settings, response, echoed = h3client.run(server.address, certs.ca, work)
    assert settings.get(0x8) == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL
    assert response.status == 200
    assert echoed == bytes((0x81, len(b"over h3"))) + b"over h3"
    assert bytes(response.body).endswith(bytes((0x88, 5)) + (4000).to_bytes(2, "big") + b"bye")


def test_requests_are_counted_and_logged_as_http3(start_server, certs):
    server = http3_server(start_server, certs, "--metrics", "127.0.0.1:0", "--access-log")
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    h3client.fetch(server.address, certs.ca, b"/counted")
    server.wait_for_log(r"GET /counted HTTP/3 200")
    samples = scraped(port)
    labels = (("method", "GET"), ("status_class", "2xx"), ("version", "3"))
    assert samples[("geventsrv_http_requests_total", labels)] == 1
    assert samples[("geventsrv_quic_connections_total", ())] == 1


def test_a_stop_answers_requests_under_way_then_closes(start_server, certs):
    server = http3_server(start_server, certs)

    async def work(client):
        slow = client.request(b"GET", b"/?delay=1.5", [], None)[1]
        await asyncio.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(client.goaway.wait(), CLIENT_TIMEOUT)
        await slow.done.wait()
        for _ in range(100):  # then CONNECTION_CLOSE
            if client.terminated is not None:
                break
            await asyncio.sleep(0.05)
        return slow, client.terminated

    slow, terminated = h3client.run(server.address, certs.ca, work)
    assert slow.status == 200
    assert terminated is not None and terminated.error_code in (0, 0x100)
    assert server.wait() == 0
    assert "http/3: 1 QUIC connection(s)" in server.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--http3"], "QUIC is always encrypted"),
        (["--http3-retry"], "add --http3"),
        (["--http3-max-datagram", "9000"], "add --http3"),
        (["--http3-alt-svc-port", "443"], "add --http3"),
        (["--http3", "--tls-cert", "CERT", "--http3-alt-svc-port", "70000"], "65535"),
        (["--http3", "--tls-cert", "CERT", "--http3-max-datagram", "1000"], "1200"),
        (["--http3", "--tls-cert", "CERT", "--http3-max-datagram", "65527"], "16383"),
        (["--http3", "--tls-cert", "CERT", "--workers", "2"], "--workers 1"),
    ],
)
def test_settings_http3_cannot_use_are_one_line_and_exit_2(certs, flags, message):
    flags = [certs.server if flag == "CERT" else flag for flag in flags]
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv", "--mode", "http", "--port", "0", *flags],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_with_several_listeners_http3_is_served_beside_those_with_tls(start_server, certs):
    from support import free_port

    tls_port = free_port()
    server = start_server("--mode", "http", "--http3",
                          "--listen", f"127.0.0.1:{tls_port},tls-cert={certs.server}")  # fmt: skip
    seen = reflect(h3client.fetch(("127.0.0.1", tls_port), certs.ca, b"/beside"))
    assert seen["request"]["http_version"] == "3"
    assert seen["server"]["local"] == f"127.0.0.1:{tls_port}"
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:  # in clear
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"Alt-Svc" not in sock.recv(65536)
