"""Prometheus metrics from a real server, parsed with prometheus_client's own parser."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import connect, echo_through, recv_until_eof, wait_until

from geventsrv.metrics import LoopMonitor


def metrics_url(server) -> str:
    return server.wait_for_log(r"metrics on (http://\S+)/metrics").group(1)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from ``base``/metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=")
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def test_connections_bytes_and_close_reasons(start_server, rng):
    server = start_server("--metrics", "127.0.0.1:0", "--idle-timeout", "0.5")
    base = metrics_url(server)
    for size in (10, 100_000):
        with connect(server.address) as sock:
            payload = rng.randbytes(size)
            assert echo_through(sock, payload, rng) == payload
    idle = connect(server.address)
    with connect(server.address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(b"x")
        time.sleep(0.2)
    # The reset one is gone; the idle one is closed by the idle timeout.
    assert recv_until_eof(idle) == b""
    idle.close()

    def settled():
        samples = scrape(base)
        return value(samples, "geventsrv_connections_closed_total", reason="idle") == 1 and (
            value(samples, "geventsrv_connections_open") == 0
        )

    assert wait_until(settled, timeout=5)
    samples = scrape(base)
    assert value(samples, "geventsrv_connections_accepted_total") == 4
    assert value(samples, "geventsrv_connections_closed_total", reason="eof") == 2
    assert value(samples, "geventsrv_connections_closed_total", reason="reset") == 1
    assert value(samples, "geventsrv_received_bytes_total") == 100_011
    assert value(samples, "geventsrv_sent_bytes_total") == 100_011
    assert value(samples, "geventsrv_connection_duration_seconds_count") == 4
    assert value(samples, "geventsrv_connection_duration_seconds_bucket", le="+Inf") == 4
    assert value(samples, "geventsrv_connection_duration_seconds_sum") > 0.5  # the idle one
    assert value(samples, "geventsrv_ready") == 1
    assert value(samples, "process_open_fds") > 3
    assert not any("127.0.0.1" in str(labels) for _, labels in samples)  # never an address


def test_bytes_of_open_connections_count_at_once(start_server):
    server = start_server("--metrics", "127.0.0.1:0")
    base = metrics_url(server)
    with connect(server.address) as sock:
        sock.sendall(b"y" * 5000)
        got = b""
        while len(got) < 5000:
            got += sock.recv(65536)
        assert value(scrape(base), "geventsrv_received_bytes_total") == 5000
        assert value(scrape(base), "geventsrv_connections_open") == 1


def test_http_and_websocket_bytes_are_what_crossed_the_wire_each_way(start_server):
    """Received counts the requests and frames as sent, sent the responses as read: in
    http mode the two differ, and neither is the other."""
    import base64

    server = start_server("--mode", "http", "--metrics", "127.0.0.1:0")
    base = metrics_url(server)
    request = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    with connect(server.address) as sock:
        sock.sendall(request)
        response = recv_until_eof(sock)
    key = base64.b64encode(os.urandom(16))
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    mask = b"\x01\x02\x03\x04"
    close = b"\x88\x82" + mask + bytes(a ^ b for a, b in zip(b"\x03\xe8", mask[:2], strict=True))
    with connect(server.address) as sock:
        sock.sendall(upgrade + close)  # a WebSocket closed with 1000 at once
        answer = recv_until_eof(sock)
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\x88\x02\x03\xe8")

    def counted() -> tuple[float, float]:
        samples = scrape(base)
        return (
            value(samples, "geventsrv_received_bytes_total"),
            value(samples, "geventsrv_sent_bytes_total"),
        )

    expected = (len(request) + len(upgrade) + len(close), len(response) + len(answer))
    assert wait_until(lambda: counted() == expected), (counted(), expected)
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert f"{expected[0]} byte(s) received, {expected[1]} sent" in server.stderr


def test_failed_openings_count_as_refused(start_server, certs):
    server = start_server("--metrics", "127.0.0.1:0", "--tls-cert", certs.server)
    base = metrics_url(server)
    with connect(server.address) as sock, contextlib.suppress(ConnectionResetError):
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        recv_until_eof(sock)
    assert wait_until(
        lambda: value(scrape(base), "geventsrv_connections_closed_total", reason="refused") == 1
    )


def test_udp_datagrams(start_server):
    server = start_server("--metrics", "127.0.0.1:0", "--udp")
    base = metrics_url(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for _ in range(3):
            sock.sendto(b"ping", server.address)
            assert sock.recv(100) == b"ping"
    samples = scrape(base)
    assert value(samples, "geventsrv_udp_datagrams_echoed_total") == 3
    assert value(samples, "geventsrv_udp_datagrams_dropped_total", reason="loop_guard") == 0


def test_a_stopped_loop_shows_as_lag_and_blocking(start_server):
    """SIGSTOP keeps the hub from running, as a blocking call would; the lag shows it."""
    server = start_server("--metrics", "127.0.0.1:0")
    base = metrics_url(server)
    before = scrape(base)
    assert value(before, "geventsrv_loop_blocked_total") == 0
    os.kill(server.pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(server.pid, signal.SIGCONT)
    time.sleep(0.3)
    after = scrape(base)
    assert value(after, "geventsrv_loop_blocked_total") >= 1
    assert value(after, "geventsrv_loop_blocked_seconds_total") >= 0.4
    assert value(after, "geventsrv_loop_lag_seconds_bucket", le="0.25") < value(
        after, "geventsrv_loop_lag_seconds_count"
    )


def test_loop_monitor_counts_blocks():
    monitor = LoopMonitor()
    for lag in (0.0005, 0.02, 0.3, 1.2, -0.001):
        monitor.record(lag)
    assert monitor.blocked == 2
    assert monitor.blocked_seconds == pytest.approx(1.5)
    assert monitor.worst == 1.2
    assert monitor.lags.cumulative()[0] == ("0.001", 2)  # the late-negative counts as 0


def test_one_endpoint_shows_every_worker_and_forgets_dead_ones(start_server):
    server = start_server("--metrics", "127.0.0.1:0", "--workers", "2", listeners=2)
    base = metrics_url(server)
    for _ in range(20):
        server.round_trip()
    samples = scrape(base)
    assert value(samples, "geventsrv_workers_answering") == 2
    per_worker = [
        value(samples, "geventsrv_connections_accepted_total", worker=w) for w in ("1", "2")
    ]
    assert sum(per_worker) == 20
    victim = next(
        child
        for child in psutil.Process(server.pid).children()
        if child.cmdline()[child.cmdline().index("--worker-id") + 1] == "1"
    )
    victim.kill()

    def restarted_and_answering() -> bool:
        samples = scrape(base)
        restarts = samples.get(("geventsrv_worker_restarts_total", (("worker", "1"),)))
        return restarts == 1 and value(samples, "geventsrv_workers_answering") == 2

    assert wait_until(restarted_and_answering, timeout=15)
    restarted = scrape(base)
    # Worker 1 is a new process: its counters start again.
    assert value(restarted, "geventsrv_connections_accepted_total", worker="1") == 0
    assert value(restarted, "geventsrv_connections_accepted_total", worker="2") == per_worker[1]


def test_missing_prometheus_client_is_one_clear_line(tmp_path):
    """Hides prometheus_client with a stub module that fails to import (it is installed)."""
    import subprocess
    import sys

    from support import ROOT

    (tmp_path / "prometheus_client.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv", "--port", "0", "--metrics", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "geventsrv: error: argument --metrics: needs prometheus_client: "
        "pip install 'geventsrv[metrics]' (see --help)"
    )
