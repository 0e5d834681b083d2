"""/healthz and /readyz of a real server: readiness turns on SIGTERM, with and without a delay."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request

import pytest
from support import connect, recv_exactly, wait_until


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def base_of(server) -> str:
    return server.wait_for_log(r"metrics on (http://\S+)/metrics").group(1)


def test_health_and_readiness_while_serving(start_server):
    server = start_server("--metrics", "127.0.0.1:0")
    base = base_of(server)
    assert get(base + "/healthz") == (200, b"ok\n")
    assert get(base + "/readyz") == (200, b"ready\n")
    assert get(base + "/nowhere")[0] == 404
    request = urllib.request.Request(base + "/readyz", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405


def test_not_ready_at_once_while_draining(start_server):
    """No delay: the listener closes at once; an open connection keeps the drain going."""
    server = start_server("--metrics", "127.0.0.1:0", "--drain-timeout", "5")
    base = base_of(server)
    with connect(server.address) as held:
        held.sendall(b"a")
        assert recv_exactly(held, 1) == b"a"
        server.send_signal(signal.SIGTERM)
        server.wait_for_log("draining for up to")
        assert get(base + "/readyz") == (503, b"not ready: stopping\n")
        assert get(base + "/healthz") == (200, b"ok\n")  # alive, just leaving
        held.sendall(b"b")  # the open connection is still served
        assert recv_exactly(held, 1) == b"b"
    assert server.wait(10) == 0


def test_shutdown_delay_keeps_accepting_while_not_ready(start_server):
    server = start_server("--metrics", "127.0.0.1:0", "--shutdown-delay", "1.5")
    base = base_of(server)
    signalled = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert wait_until(lambda: get(base + "/readyz")[0] == 503, timeout=0.5)
    server.round_trip(b"new client during the delay")  # still accepted and served
    server.wait_for_log("accepting for 1.5 s more")
    server.wait_for_log("no longer accepting")
    assert time.monotonic() - signalled >= 1.4
    assert server.wait(10) == 0
    assert server.stderr.count("SIGTERM received") == 1, server.stderr  # one signal, one line


def test_a_second_signal_cuts_the_delay_short(start_server):
    server = start_server("--metrics", "127.0.0.1:0", "--shutdown-delay", "30")
    base_of(server)
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("accepting for 30 s more")
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 4  # forced
    assert time.monotonic() - started < 5


def test_supervisor_readiness_with_workers(start_server):
    server = start_server(
        "--metrics", "127.0.0.1:0", "--workers", "2", "--shutdown-delay", "1", listeners=2
    )
    base = base_of(server)
    assert wait_until(lambda: get(base + "/readyz")[0] == 200)
    server.send_signal(signal.SIGTERM)
    assert wait_until(lambda: get(base + "/readyz")[0] == 503, timeout=0.5)
    server.round_trip(b"workers still accept during the delay")
    assert server.wait(15) == 0


def test_supervisor_is_not_ready_while_no_worker_serves(start_server):
    """From the workers' death until a replacement accepts, /readyz is 503, then 200."""
    import psutil

    server = start_server("--metrics", "127.0.0.1:0", "--workers", "2", listeners=2)
    base = base_of(server)
    # A worker logs "listening" a moment before its metrics socket is open.
    assert wait_until(lambda: get(base + "/readyz") == (200, b"ready\n"))
    for worker in psutil.Process(server.pid).children():
        worker.kill()
    # The supervisor waits half a second before starting a replacement.
    assert wait_until(lambda: get(base + "/readyz") == (503, b"not ready: no worker serving yet\n"))
    assert wait_until(lambda: get(base + "/readyz")[0] == 200, timeout=15)
    server.round_trip(b"ready means a worker accepts")
