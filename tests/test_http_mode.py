"""``--mode http`` as a whole over real sockets: behind TLS and the PROXY protocol, with
curl, and how it drains."""

from __future__ import annotations

import json
import socket
import time

from http1client import curl, read_response
from support import CLIENT_TIMEOUT, recv_until_eof


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


def test_http3_without_its_library_is_one_line_and_exit_2(certs):
    """Where aioquic is not installed (Python 3.10, or the extra left out), ``--http3`` is
    refused before anything is bound; where it is, this case has nothing to check."""
    import importlib.util
    import subprocess
    import sys

    import pytest

    if importlib.util.find_spec("aioquic") is not None:
        pytest.skip("aioquic is installed here: HTTP/3 is served (tests/test_http_h3.py)")
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv", "--mode", "http", "--port", "0",
         "--tls-cert", certs.server, "--http3"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs aioquic" in result.stderr and "geventsrv[http3]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
