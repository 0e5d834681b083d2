"""The HTTP/3 lab's load process: libcurl's HTTP/3 (curl_cffi) run for real against the http
mode, its figures read back as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("curl_cffi")
pytest.importorskip("aioquic")  # HTTP/3 itself (Python 3.11 and later)


def h3load(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench.h3load", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def server(start_server, certs):
    return start_server("--mode", "http", "--tls-cert", certs.server, "--http3",
                        "--max-conns-per-client", "0")  # fmt: skip


def test_a_window_of_load_gives_requests_and_no_errors(server):
    figures = h3load(f"https://127.0.0.1:{server.port}/?bytes=40", "--connections", "4",
                     "--seconds", "1")  # fmt: skip
    assert figures["requests"] > 0 and figures["requests_per_s"] > 0 and figures["errors"] == 0


def test_answers_that_are_not_200_are_errors(server):
    figures = h3load(f"https://127.0.0.1:{server.port}/?status=503", "--connections", "2",
                     "--seconds", "1")  # fmt: skip
    assert figures["requests"] == 0 and figures["errors"] > 0


def test_a_transfer_is_echoed_and_downloaded_whole(server):
    figures = h3load(f"https://127.0.0.1:{server.port}/echo", "--transfer", str(300_000))
    assert figures["errors"] == 0
    assert figures["echo_mb_per_s"] > 0 and figures["download_mb_per_s"] > 0


def test_aioquics_client_echoes_in_the_datagrams_it_is_given(server):
    figures = h3load(f"https://127.0.0.1:{server.port}/echo", "--transfer", str(3_000_000),
                     "--client", "aioquic", "--datagram", "16383")  # fmt: skip
    assert figures["errors"] == 0 and figures["echo_mb_per_s"] > 0
