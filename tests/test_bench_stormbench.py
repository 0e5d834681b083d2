"""``bench storm``: the C generator's busy storm against real servers, and the command's report.

Small storms here (hundreds of connections, under a second); the 10,000-connection
storm runs in the ``slow`` env (tests/test_server_scale.py). Counts only: whether
every connection was echoed, never how fast (a busy machine must not fail them).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import ROOT, ServerProcess

from geventsrv.bench import cload
from geventsrv.bench.stormbench import medians


@pytest.fixture(scope="module", autouse=True)
def c_generator() -> None:
    try:
        cload.build()
    except cload.BuildError as exc:
        pytest.skip(str(exc))


def storm_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "storm", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize("io", ["fast", "patched"])
def test_every_connection_of_a_busy_storm_echoes_and_keeps_echoing(io):
    server = ServerProcess("--port", "0", "--max-conns-per-client", "0", "--io", io)
    server.wait_listening()
    try:
        result = cload.busy_storm(server.address, 300, size=64, seconds=1.0)
    finally:
        assert server.stop() == 0, server.stderr
    assert result.errors == 0 and result.mismatches == 0, result.first_error
    assert result.served == 300 and result.unserved == 0
    assert result.requests > 300  # each went on echoing after its first
    assert 0 < result.first_echo_p50 <= result.first_echo_p99 <= result.first_echo_max


def test_a_server_that_never_answers_leaves_every_connection_unserved():
    """A listener that never accepts: connections complete in the kernel, never echo."""
    import socket

    with socket.create_server(("127.0.0.1", 0), backlog=512) as silent:
        result = cload.busy_storm(silent.getsockname(), 100, size=64, seconds=0.5)
    assert result.served == 0 and result.unserved == 100 and result.late == 100
    assert result.requests == 0
    assert result.first_echo_max >= 0.4  # waited to the end, counted as such


@pytest.mark.slow
def test_the_command_reports_each_server_and_writes_its_rounds(tmp_path):
    out = tmp_path / "storm.json"
    done = storm_command(
        "--servers", "geventsrv,asyncio-protocol", "--connections", "200", "--seconds", "0.5",
        "--rounds", "2", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["machine"]["cpu"] and data["settings"]["connections"] == 200
    assert [run["server"] for run in data["runs"]] == [
        "geventsrv", "asyncio-protocol", "asyncio-protocol", "geventsrv"
    ]  # interleaved, the order rotated  # fmt: skip
    rows = {row["server"]: row for row in data["medians"]}
    assert set(rows) == {"geventsrv", "asyncio-protocol"}
    for row in rows.values():
        assert row["rounds"] == 2 and row["mismatches"] == 0 and row["errors"] == 0
        assert row["unserved_most"] == 0
    assert "| geventsrv |" in done.stdout and "| asyncio-protocol |" in done.stdout


def test_an_unknown_server_is_one_clear_error():
    done = storm_command("--servers", "nginx")
    assert done.returncode == 2
    assert "unknown server(s) nginx" in done.stderr and "Traceback" not in done.stderr


def test_medians_take_the_middle_round_and_the_worst_counts():
    runs = [
        {"server": "s", "first_echo_max_s": longest, "first_echo_p50_s": 0.1, "unserved": unserved,
         "late": late, "errors": 0, "mismatches": 0, "requests": 100, "seconds": 2.0}
        for longest, unserved, late in ((0.5, 0, 3), (0.2, 2, 0), (0.3, 0, 1))
    ]  # fmt: skip
    (row,) = medians(runs, ["s", "absent"])
    assert row["longest_first_echo_s"] == 0.3 and row["longest_first_echo_range_s"] == [0.2, 0.5]
    assert row["unserved_most"] == 2 and row["late_most"] == 3 and row["echoes_per_s"] == 50
