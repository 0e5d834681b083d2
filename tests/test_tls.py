"""TLS on the TCP port, against real clients: Python's ssl, openssl s_client, ncat, socat.

Certificates come from trustme, made for the session (see ``conftest.Certs``).
"""

from __future__ import annotations

import json
import select
import ssl
import subprocess
import time

import pytest
from support import (
    CLIENT_TIMEOUT,
    TlsClient,
    connect,
    random_chunks,
    recv_exactly,
    recv_until_eof,
    require_tool,
)
from test_cli import assert_one_line_error, run_cli

from geventsrv.addresses import format_address
from geventsrv.exitcodes import USAGE


def tls_connect(server, context, hostname="localhost"):
    """A handshaken ``SSLSocket`` (with the client socket's timeout) to ``server``."""
    return context.wrap_socket(connect(server.address), server_hostname=hostname)


def tls_round_trip(server, context, payload=b"over tls\n"):
    with tls_connect(server, context) as sock:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload))


# -- files, judged before anything is bound ------------------------------------------


def test_missing_certificate_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere.pem"
    result = run_cli("--port", "0", "--tls-cert", str(missing))
    assert_one_line_error(result, USAGE, "--tls-cert", str(missing), "cannot read")


def test_certificate_that_is_not_pem(tmp_path, certs):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = run_cli("--port", "0", "--tls-cert", str(junk), "--tls-key", certs.server_key)
    assert_one_line_error(result, USAGE, "--tls-cert", str(junk), "no PEM certificate")


def test_certificate_without_its_key_blames_the_certificate_file(certs):
    """No --tls-key: the key must be in the --tls-cert file, and the message says that."""
    result = run_cli("--port", "0", "--tls-cert", certs.server_cert)
    assert_one_line_error(
        result, USAGE, "argument --tls-cert:", certs.server_cert, "no private key", "--tls-key"
    )


def test_key_that_does_not_match_the_certificate(certs):
    result = run_cli(
        "--port", "0", "--tls-cert", certs.server_cert, "--tls-key", certs.unrelated_key
    )
    assert_one_line_error(result, USAGE, "--tls-key", certs.unrelated_key, "does not match")


def test_unreadable_key(tmp_path, certs):
    result = run_cli("--port", "0", "--tls-cert", certs.server_cert, "--tls-key", str(tmp_path))
    assert_one_line_error(result, USAGE, "--tls-key", str(tmp_path), "cannot read")


def test_ca_file_that_is_not_pem(tmp_path, certs):
    junk = tmp_path / "ca.der"
    junk.write_bytes(b"\x30\x82\x01\x00garbage")
    result = run_cli("--port", "0", "--tls-cert", certs.server, "--tls-ca", str(junk))
    assert_one_line_error(result, USAGE, "--tls-ca", str(junk), "no PEM CA certificate")


def test_key_without_certificate_is_refused(certs):
    assert_one_line_error(run_cli("--tls-key", certs.server_key), USAGE, "tls-key")


def test_workers_refuse_bad_files_before_starting_any(tmp_path):
    result = run_cli("--port", "0", "--workers", "2", "--tls-cert", str(tmp_path / "none.pem"))
    assert_one_line_error(result, USAGE, "none.pem")


# -- echo over TLS -----------------------------------------------------------------


@pytest.mark.parametrize("files", ["combined", "separate"])
def test_python_client_echo(start_server, certs, files):
    flags = (
        ("--tls-cert", certs.server)
        if files == "combined"
        else ("--tls-cert", certs.server_cert, "--tls-key", certs.server_key)
    )
    server = start_server(*flags)
    assert "tls" in server.wait_for_log("listening on").string
    assert tls_round_trip(server, certs.client_context()) == b"over tls\n"


@pytest.mark.parametrize("size", [1, 100_000, 3 * 2**20])
def test_byte_exact_echo_with_close_notify_then_fin(start_server, certs, rng, size):
    """Random chunks; the client ends with close_notify then FIN, and so must the server."""
    server = start_server("--tls-cert", certs.server)
    payload = rng.randbytes(size)
    client = TlsClient(server.address, certs.client_context(), "localhost").handshake()
    try:
        received = client.echo(list(random_chunks(payload, rng)))
    finally:
        client.close()
    assert received == payload
    assert client.close_notify_received, "the server closed without close_notify"


def test_upper_mode_over_tls(start_server, certs):
    server = start_server("--tls-cert", certs.server, "--mode", "upper")
    assert tls_round_trip(server, certs.client_context(), b"Mixed Case 1\n") == b"MIXED CASE 1\n"


def test_chat_mode_over_tls(start_server, certs):
    server = start_server("--tls-cert", certs.server, "--mode", "chat")
    context = certs.client_context()
    with tls_connect(server, context) as alice, tls_connect(server, context) as bob:
        assert b"connected as" in alice.recv(4096)
        bob.recv(4096)  # the list of those already connected
        alice.recv(4096)  # bob's arrival, announced to alice
        alice.sendall(b"hello bob\n")
        deadline = time.monotonic() + 5
        heard = b""
        while b"hello bob" not in heard and time.monotonic() < deadline:
            heard += bob.recv(4096)
        assert b"hello bob\n" in heard


def test_info_mode_over_tls_names_what_was_negotiated(start_server, certs):
    server = start_server("--tls-cert", certs.server, "--mode", "info", "--tls-alpn", "h2,echo")
    with tls_connect(server, certs.client_context(alpn=["echo"])) as sock:
        line = sock.makefile("rb").readline()
        info = json.loads(line)
        assert info["tls"] == {
            "version": sock.version(),
            "cipher": sock.cipher()[0],
            "sni": "localhost",
            "alpn": "echo",
            "client_cert": None,
        }


def test_workers_serve_tls(start_server, certs):
    server = start_server("--tls-cert", certs.server, "--workers", "2", listeners=2)
    context = certs.client_context()
    for number in range(8):
        payload = f"to a worker {number}\n".encode()
        assert tls_round_trip(server, context, payload) == payload


# -- mutual TLS ----------------------------------------------------------------------


def mtls_refused(server, context) -> bool:
    """Whether the server refused: an alert or a close where the echo should be."""
    try:
        with tls_connect(server, context) as sock:
            sock.sendall(b"let me in\n")
            return sock.recv(100) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def test_mutual_tls(start_server, certs):
    server = start_server(
        "--tls-cert", certs.server, "--tls-ca", certs.ca, "--mode", "info", "--log-level", "debug"
    )
    with tls_connect(server, certs.client_context(certs.client)) as sock:
        info = json.loads(sock.makefile("rb").readline())
        assert info["tls"]["client_cert"].endswith("CN=tester")
        sock.sendall(b"trusted\n")
        assert recv_exactly(sock, 8) == b"trusted\n"
    refusals = {
        "no certificate": certs.client_context(),
        "expired": certs.client_context(certs.client_expired),
        "unknown CA": certs.client_context(certs.client_unknown_ca),
    }
    for name, context in refusals.items():
        seen = len(server.lines)
        assert mtls_refused(server, context), name
        server.wait_for_log("closed before serving: TLS handshake failed", after=seen)
    with tls_connect(server, certs.client_context(certs.client)) as sock:
        assert json.loads(sock.makefile("rb").readline())["connection"] == 5


# -- hostile or broken clients ----------------------------------------------------------


def client_hello() -> bytes:
    """The first flight of a real TLS client, to cut short."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def closed_after(sock, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reads and drops anything it sends)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


@pytest.mark.parametrize("sends", ["nothing", "half a ClientHello", "a byte a second"])
def test_handshake_timeout(start_server, certs, sends):
    server = start_server(
        "--tls-cert", certs.server, "--tls-handshake-timeout", "1", "--log-level", "debug"
    )
    hello = client_hello()
    with connect(server.address) as sock:
        start = time.monotonic()
        if sends == "half a ClientHello":
            sock.sendall(hello[: len(hello) // 2])
        elif sends == "a byte a second":
            for byte in hello[:3]:  # each byte would reset a per-read timeout
                sock.sendall(bytes([byte]))
                time.sleep(0.45)
        waited = time.monotonic() - start + closed_after(sock, 10)
    assert 0.9 < waited < 3.0
    server.wait_for_log("no TLS handshake within 1 s")  # and it still serves others:
    assert tls_round_trip(server, certs.client_context()) == b"over tls\n"


@pytest.mark.parametrize("garbage", [b"hello\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 600])
def test_plain_text_or_garbage_costs_one_connection(start_server, certs, garbage):
    server = start_server("--tls-cert", certs.server, "--log-level", "debug")
    with connect(server.address) as sock:
        sock.sendall(garbage)
        closed_after(sock, 5)
    line = server.wait_for_log("closed before serving: TLS handshake failed")
    assert "Traceback" not in server.stderr
    assert "ERROR" not in server.stderr, line
    assert tls_round_trip(server, certs.client_context()) == b"over tls\n"


@pytest.mark.parametrize("mode", ["http", "echo"])
def test_plain_http_to_the_tls_port_gets_a_plain_400_saying_so_and_one_info_line(
    start_server, certs, mode
):
    """As nginx answers it: a reset would leave curl saying only "Connection reset by peer"."""
    curl = require_tool("curl", "curl")
    server = start_server("--tls-cert", certs.server, "--mode", mode)
    with connect(server.address) as sock:
        client = format_address(*sock.getsockname()[:2])
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        answer = recv_until_eof(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
    assert (
        body == b"This port speaks TLS: the plain HTTP request was sent to a TLS port; use https.\n"
    )
    line = server.wait_for_log(r"INFO geventsrv.server: (\S+): closed before serving: plain HTTP")
    assert line.group(1) == client
    shown = subprocess.run(
        [curl, "-s", "-S", f"http://127.0.0.1:{server.port}/"],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip
    assert "speaks TLS" in shown.stdout, shown
    if mode == "echo":
        assert tls_round_trip(server, certs.client_context()) == b"over tls\n"
    else:  # and https:// is answered as ever
        with tls_connect(server, certs.client_context()) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(tls).startswith(b"HTTP/1.1 200 ")


# -- other real clients -------------------------------------------------------------


def test_openssl_s_client(start_server, certs):
    openssl = require_tool("openssl", "openssl")
    server = start_server("--tls-cert", certs.server)
    host, port = server.address
    command = [openssl, "s_client", "-quiet", "-connect", f"{host}:{port}"]
    command += ["-servername", "localhost", "-CAfile", certs.ca, "-verify_return_error"]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as client:
        try:
            assert client.stdin is not None and client.stdout is not None
            for line in (b"first line\n", b"second line\n"):
                client.stdin.write(line)
                client.stdin.flush()
                ready, _, _ = select.select([client.stdout], [], [], 10)
                assert ready, "no echo from the server"
                assert client.stdout.readline() == line
        finally:
            client.kill()


@pytest.mark.parametrize("tool", ["ncat", "socat"])
def test_ncat_and_socat_echo_a_file(start_server, certs, rng, tmp_path, tool):
    path = require_tool(tool, tool)
    server = start_server("--tls-cert", certs.server)
    _, port = server.address
    if tool == "ncat":
        command = [path, "-4", "--ssl", "--ssl-verify", "--ssl-trustfile", certs.ca]
        command += ["localhost", str(port)]
    else:  # -t: after its own EOF, wait for the rest of the echo
        command = [path, "-t", "10", "-", f"OPENSSL:127.0.0.1:{port},cafile={certs.ca}"]
        command[-1] += ",commonname=localhost"
    payload = rng.randbytes(500_000)
    result = subprocess.run(command, input=payload, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
