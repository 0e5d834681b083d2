"""``bench cluster``: the shipped HAProxy config, the verdicts, and short real runs of every
scenario (slow: namespaces where the machine allows, loopback always)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import ROOT, require_tool, wait_until

from geventsrv.bench import clusterreport, hosts
from geventsrv.bench.cluster import Settings, haproxy_config
from geventsrv.bench.distload import Recorder, Timeline

CONTRIB = ROOT / "contrib" / "haproxy" / "geventsrv.cfg"
EXAMPLE_HOSTS = [("10.0.0.11", 7007), ("10.0.0.12", 7007), ("10.0.0.13", 7007)]


def test_the_shipped_haproxy_config_is_the_one_the_cluster_runs_and_haproxy_accepts_it():
    body = "".join(
        line for line in CONTRIB.read_text().splitlines(keepends=True) if not line.startswith("#")
    ).lstrip("\n")
    expected = haproxy_config(
        EXAMPLE_HOSTS, [9100] * 3, ("0.0.0.0", 7007), Path("/run/haproxy/geventsrv.sock"),
        Settings(),
    )  # fmt: skip
    assert body == expected
    haproxy = require_tool("haproxy", "haproxy")
    checked = subprocess.run([haproxy, "-c", "-f", str(CONTRIB)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def timeline_of(*records: Recorder, tmp_path: Path) -> Timeline:
    for number, record in enumerate(records):
        record.write(str(tmp_path), f"process{number}")
    return Timeline.read(tmp_path)


def test_records_of_several_processes_add_up(tmp_path):
    first, second = Recorder(), Recorder()
    first.add(100.01, "a:1", "echo", 2.0, None)
    second.add(100.02, "a:1", "echo", 5.0, None)
    second.add(100.03, "b:1", "echo", 1.0, "reset")
    timeline = timeline_of(first, second, tmp_path=tmp_path)
    assert timeline.processes == 2
    assert timeline.totals() == {"a:1": 2, "b:1": 0}
    assert timeline.longest_ms() == 5.0
    assert timeline.mean_ms() == pytest.approx(3.5)
    assert timeline.failure_counts() == {"reset": 1}
    assert timeline.between(100.025, 200).failures == [(100.03, "b:1", "echo", "reset")]


def failover_result(timeline: Timeline, killed: float = 100.0) -> dict:
    return {
        "timeline": timeline,
        "victim": "b:1",
        "killed": killed,
        "detected_after": 0.7,
        "back": 105.0,
        "ended": 110.0,
        "labels": {"a:1": "host1", "b:1": "host2"},
    }


def test_failover_verdicts_hold_only_for_failures_on_the_killed_host(tmp_path):
    settings = Settings(hosts=2, users=10)
    good = Recorder()
    for when in (99.0, 106.0):
        good.add(when, "a:1", "echo", 1.0, None)
        good.add(when, "b:1", "echo", 1.0, None)
    good.add(100.01, "b:1", "echo", 1.0, "eof")  # open on the killed host: allowed
    good.add(100.5, "connect", "connect", 1.0, "eof")  # within interval x fall
    (tmp_path / "good").mkdir()
    result = failover_result(timeline_of(good, tmp_path=tmp_path / "good"))
    assert [v.held for v in clusterreport.judge_failover(result, settings)] == [True] * 3

    bad = Recorder()
    bad.add(99.0, "b:1", "echo", 1.0, None)  # served before the kill, never after
    bad.add(100.2, "a:1", "echo", 1.0, "reset")  # a survivor's connection failed
    bad.add(102.0, "connect", "connect", 1.0, "eof")  # 2 s after the kill: too late
    (tmp_path / "bad").mkdir()
    result = failover_result(timeline_of(bad, tmp_path=tmp_path / "bad"))
    assert [v.held for v in clusterreport.judge_failover(result, settings)] == [False] * 3


def test_rolling_verdicts_count_any_failure_and_the_longest_wait(tmp_path):
    settings = Settings(hosts=1, shutdown_delay=2.0)
    events = [{"time": 100.0, "event": "up in HAProxy", "host": "host1"}]
    record = Recorder()
    record.add(100.0, "a:1", "echo", 2999.0, None)
    (tmp_path / "ok").mkdir()
    result = {"timeline": timeline_of(record, tmp_path=tmp_path / "ok"), "events": events}
    assert all(v.held for v in clusterreport.judge_rolling(result, settings))
    record.add(100.1, "a:1", "echo", 3001.0, "wrong bytes")
    (tmp_path / "bad").mkdir()
    result = {"timeline": timeline_of(record, tmp_path=tmp_path / "bad"), "events": []}
    assert [v.held for v in clusterreport.judge_rolling(result, settings)] == [False] * 3


@pytest.mark.parametrize(
    ("counts", "held"),
    [({"h1": 100, "h2": 114, "h3": 86}, True), ({"h1": 100, "h2": 120, "h3": 80}, False)],
)
def test_steady_shares_must_sit_within_15_percent_of_the_mean(counts, held):
    result = {"requests": counts, "connections": counts, "timeline": Timeline()}
    verdicts = clusterreport.judge_steady(result, hosts=3)
    assert [v.held for v in verdicts] == [held, held, True]


def cluster(*args: str, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "cluster", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--shutdown-delay", "1"), "--shutdown-delay must be at least"),
        (("--hosts", "1"), "failover needs at least 2 hosts"),
        (("--scenarios", "steady,chaos"), "choose from steady, rolling, failover"),
        (("--users", "0"), "argument --users: must be a whole number of at least 1"),
        (("--load", "c"), "--load c runs the steady scenario only"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    result = cluster(*args, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def run_and_read(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    require_tool("haproxy", "haproxy")
    result = cluster("--quick", "--out", str(tmp_path), *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads((tmp_path / "cluster.json").read_text())


@pytest.mark.slow
def test_every_scenario_in_namespaces_holds_its_targets_and_leaves_nothing(tmp_path):
    require_tool("ip", "iproute2")
    if why := hosts.namespaces_unavailable():
        pytest.skip(why)
    result, data = run_and_read(tmp_path, "--network", "netns")
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["network"] == "netns"
    assert [v["scenario"] for v in data["verdicts"]].count("failover") == 3
    assert all(v["held"] for v in data["verdicts"])
    steady = data["results"]["steady"]
    assert len(steady["requests"]) == 3 and min(steady["connections"].values()) > 0
    assert data["results"]["cost"]["summary"]["direct_mean_us"] > 0
    assert data["results"]["rolling"]["failures"] == {}
    assert (tmp_path / "cluster_timeline.png").stat().st_size > 20_000
    assert "PASS rolling" in result.stdout and "FAIL" not in result.stdout
    assert not [line for line in result.stderr.splitlines() if "gsc-" in line]
    assert [name for kind, name, _ in hosts.created() if kind == "netns"] == []


def metrics_dirs() -> set[Path]:
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("geventsrv-metrics-*"))


@pytest.mark.slow
def test_rolling_and_failover_with_the_default_out_leave_no_metrics_directory(tmp_path):
    """As a user runs it from a fresh clone: no --out (reports/cluster, a relative path)."""
    require_tool("haproxy", "haproxy")
    before = metrics_dirs()
    result = cluster(
        "--quick", "--network", "loopback", "--hosts", "2", "--workers", "2",
        "--scenarios", "rolling,failover", "--users", "10", "--load-workers", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = tmp_path / "reports" / "cluster"
    data = json.loads((out / "cluster.json").read_text())
    assert data["network"] == "loopback"
    hosts_seen = {row.split(",")[2] for row in (out / "cluster_timeline.csv").open()}
    assert {"host1", "host2"} <= hosts_seen
    assert metrics_dirs() <= before, metrics_dirs() - before  # restarted, killed: none left


@pytest.mark.slow
def test_raw_rate_with_the_c_load_generator(tmp_path):
    result, data = run_and_read(
        tmp_path, "--network", "loopback", "--hosts", "2", "--workers", "1", "--load", "c",
        "--scenarios", "steady", "--connections", "20",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    steady = data["results"]["steady"]
    assert steady["requests_per_s"] > 100 and steady["errors"] == 0 and steady["mismatches"] == 0
    assert set(steady["connections"]) == {"host1", "host2"} == set(steady["requests"])
    assert sum(steady["connections"].values()) == 20


@pytest.mark.slow
def test_connections_that_outlive_the_drain_fail_the_rolling_target_and_exit_1(tmp_path):
    """Clients that never close meet the drain deadline: the gate must say so."""
    result, data = run_and_read(
        tmp_path, "--network", "loopback", "--hosts", "2", "--workers", "1",
        "--scenarios", "rolling", "--users", "6", "--load-workers", "0",
        "--requests-per-connection", "10000000", "--drain-timeout", "0.5",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL rolling  0 failed connects, 0 resets, 0 wrong or missing bytes" in result.stdout
    assert data["results"]["rolling"]["failures"]


@pytest.mark.slow
def test_ctrl_c_stops_and_removes_everything(tmp_path):
    require_tool("haproxy", "haproxy")
    proc = subprocess.Popen(
        [sys.executable, "-m", "geventsrv.bench", "cluster", "--quick", "--steady", "60",
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        started = wait_until(
            lambda: len(psutil.Process(proc.pid).children(recursive=True)) >= 6, timeout=60
        )
        assert started, "the cluster did not come up"
        time.sleep(2)
        made = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert wait_until(lambda: not [p for p in made if p.is_running() and p.status() != "zombie"])
    if os.geteuid() == 0:
        assert [name for _, name, pid in hosts.created() if pid == proc.pid] == []
