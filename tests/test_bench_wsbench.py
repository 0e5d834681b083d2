"""``python -m geventsrv.bench ws``: the C generator's WebSocket mode checks every echo, and a
run reports every server with the machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from geventsrv.bench import cload, wsbench


@pytest.fixture
def c_generator() -> None:
    try:
        cload.build()
    except cload.BuildError as exc:
        pytest.skip(f"the C load generator cannot be built here: {exc}")


def test_the_ws_mode_upgrades_and_counts_checked_echoes(start_server, c_generator):
    server = start_server("--mode", "http")
    result = wsbench.load_window(server.port, 4, 1024, 0.5)
    assert result.requests > 0 and result.errors == 0 and result.mismatches == 0


def test_a_server_that_does_not_upgrade_is_refused_in_one_line(start_server, c_generator):
    server = start_server("--mode", "echo")  # echoes the upgrade request: no 101
    with pytest.raises(wsbench.BenchError, match="upgrade"):
        wsbench.load_window(server.port, 2, 1024, 0.3)


@pytest.mark.slow
def test_a_quick_run_measures_every_server_and_the_idle_memory(tmp_path, c_generator):
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "ws", "--quick", "--idle", "200",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "ws.json").read_text())
    assert report["meta"]["machine"]["cpu"]
    assert f"wrote {tmp_path / 'ws.json'}" in result.stdout
    assert (tmp_path / "ws.md").read_text().startswith("Machine: ")
    assert "Command: `python -m geventsrv.bench ws --quick" in (tmp_path / "ws.md").read_text()
    rows = {row["server"]: row for row in report["rows"]}
    assert set(rows) == {server.name for server in wsbench.SERVERS}
    for row in rows.values():
        assert row["messages_per_s"] > 0 and row["errors"] == 0
        assert row["kib_per_idle_connection"] is not None


def test_the_help_gives_every_default():
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "ws", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    for option in ("--size", "--connections", "--duration", "--warmup", "--rounds", "--idle"):
        after = result.stdout.split(option, 2)[-1]
        assert "(default: " in after.split("\n  --", 1)[0], option
