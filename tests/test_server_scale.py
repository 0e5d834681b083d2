"""Scale: 10,000 concurrent connections and 10,000-connection storms, in separate processes.

Marked slow: they run in the tox env ``slow``. The figures they measure are
printed (``pytest -s``) and kept as test properties in JUnit XML reports.
"""

from __future__ import annotations

import time

import pytest

from geventsrv.bench import cload
from geventsrv.bench.load import PythonLoad
from geventsrv.bench.loadgen import Histogram

pytestmark = pytest.mark.slow

CONNECTIONS = 10_000  # with the load processes' own, well inside the 20,000 descriptor limit


def test_ten_thousand_concurrent_connections_echo_exactly(start_server, record_property):
    """Expected: 10,000 connections from two load processes, each echoing random 1 KiB
    messages for 3 s, see zero mismatches and zero errors, and every connection
    completes at least one request in the window (percentiles over completed requests
    cannot see one that never does); afterwards the server's descriptors and greenlets
    return to their baseline."""
    server = start_server("--max-conns", str(CONNECTIONS), "--max-conns-per-client", "0")
    baseline = server.status()
    loads = [PythonLoad(server.address, CONNECTIONS // 2, 1024) for _ in range(2)]
    assert sum(load.ready() for load in loads) == 0  # every connect succeeded
    window_start = time.monotonic() + 1.0
    window_end = window_start + 3.0
    for load in loads:
        load.run(window_start, window_end)
    time.sleep(window_start + 1.0 - time.monotonic())
    loaded = server.status()
    results = [load.result() for load in loads]
    assert loaded["connections"] == CONNECTIONS
    for result in results:
        assert result.errors == 0 and result.mismatches == 0, result.first_error
    histogram = Histogram()
    for result in results:
        histogram.merge(result.histogram)
    requests = sum(result.requests for result in results)
    assert requests > CONNECTIONS  # most connections echoed many times
    assert sum(result.unserved for result in results) == 0, "connections left unserved"
    figures = {
        "requests_per_s": round(requests / 3.0),
        "p50_ms": round(histogram.percentile(0.5) / 1000, 1),
        "p99_ms": round(histogram.percentile(0.99) / 1000, 1),
        "rss_per_connection_kib": round((loaded["rss_kib"] - baseline["rss_kib"]) / CONNECTIONS, 2),
        "fewest_per_connection": min(result.fewest_per_connection for result in results),
        "longest_wait_s": round(max(result.longest_wait for result in results), 2),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\n10,000 connections: {figures}")
    server.assert_back_to_baseline(baseline, timeout=30)


def test_a_storm_of_ten_thousand_connects_is_accepted_without_a_reset(
    start_server, record_property
):
    """Expected: 10,000 connects made back to back, each sending one message at once,
    are all accepted and all echoed, none reset or refused; the time to connect
    them all and to each first echo is reported."""
    try:
        cload.build()
    except cload.BuildError as exc:
        pytest.skip(str(exc))
    server = start_server("--max-conns", str(CONNECTIONS), "--max-conns-per-client", "0")
    baseline = server.status()
    with cload.Storm(server.address, CONNECTIONS, size=64) as storm:
        result = storm.result
        assert result.failed == 0 and result.ok == CONNECTIONS, result
        assert server.status()["connections"] == CONNECTIONS
    figures = {
        "connect_all_s": round(result.connect_seconds, 3),
        "first_echo_p99_s": round(result.first_echo_p99, 3),
        "first_echo_max_s": round(result.first_echo_max, 3),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\nstorm of 10,000: {figures}")
    server.assert_back_to_baseline(baseline, timeout=30)


@pytest.mark.parametrize("io", ["fast", "patched"])
def test_a_storm_of_ten_thousand_busy_connections_echoes_every_one(
    io, start_server, record_property
):
    """Expected: 10,000 connections opened back to back, each echoing 64-byte messages in
    a closed loop from the moment it connects, are every one echoed (none left waiting
    behind the busy ones for the whole storm), none fails, every reply is right. The
    storm lasts 5 s, long enough to outlast a handshake retried after an overflow (1 s,
    then 3 s), so that a busy machine cannot fail it; the waits are reported."""
    try:
        cload.build()
    except cload.BuildError as exc:
        pytest.skip(str(exc))
    server = start_server(
        "--max-conns", str(CONNECTIONS), "--max-conns-per-client", "0", "--io", io
    )
    baseline = server.status()
    result = cload.busy_storm(server.address, CONNECTIONS, size=64, seconds=5.0)
    assert result.errors == 0 and result.mismatches == 0, result.first_error
    assert result.served == CONNECTIONS and result.unserved == 0, result
    figures = {
        "connect_all_s": round(result.connect_seconds, 3),
        "first_echo_p50_s": round(result.first_echo_p50, 3),
        "first_echo_max_s": round(result.first_echo_max, 3),
        "not_echoed_in_first_second": result.late,
        "echoes_per_s": round(result.requests / 5.0),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\nbusy storm of 10,000 ({io}): {figures}")
    server.assert_back_to_baseline(baseline, timeout=30)
