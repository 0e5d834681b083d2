"""The soak command: a short real run, and the verdicts it draws from samples."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from geventsrv.bench.soak import Tally, _verdicts, trend


def _samples(rss: list[float]) -> list[dict[str, float]]:
    return [
        {"elapsed_s": i, "rss_mib": value, "fds": 50, "greenlets": 50, "connections": 40}
        for i, value in enumerate(rss)
    ]


def test_a_steady_run_passes_and_a_growing_one_fails():
    baseline = {"rss_mib": 30, "fds": 8, "greenlets": 6, "connections": 0}
    steady = _samples([40, 41, 40, 42, 40, 41, 40, 41, 42, 40, 41, 40])
    verdicts = _verdicts(steady, baseline, baseline, Tally(), 0.0, 0)
    assert not [v for v in verdicts if v.startswith("FAIL")], verdicts
    growing = _samples([40 + 3 * i for i in range(12)])  # +3 MiB a sample: a leak
    verdicts = _verdicts(growing, baseline, baseline, Tally(), 0.0, 0)
    assert any(v.startswith("FAIL: rss_mib") for v in verdicts), verdicts


def test_lost_bytes_leaked_descriptors_and_a_bad_exit_each_fail():
    baseline = {"rss_mib": 30, "fds": 8, "greenlets": 6, "connections": 0}
    leaked = dict(baseline, fds=9)
    tally = Tally(lost=["checked echo: 10 of 20 bytes back, or wrong"])
    verdicts = _verdicts(_samples([40] * 12), baseline, leaked, tally, 0.0, 1)
    failed = " ".join(v for v in verdicts if v.startswith("FAIL"))
    assert "fds at the end 9" in failed
    assert "checked echo" in failed
    assert "exit code 1" in failed


def test_trend_compares_the_medians_of_the_first_and_last_thirds():
    assert trend([1, 100, 1, 5, 5, 5, 9, 9, 100]) == (1, 9)


@pytest.mark.slow
def test_a_short_soak_passes_and_writes_its_csv_plot_and_summary(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "soak", "--minutes", "0.4", "--sample", "1",
         "--connections", "50", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert summary["requests"] > 0
    assert sum(summary["faults"].values()) > 10
    assert (tmp_path / "soak.csv").read_text().count("\n") >= 20
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["--minutes", "0"], ["--client", "java"], ["--sample", "-1"]])
def test_bad_soak_arguments_exit_2(args):
    done = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "soak", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
