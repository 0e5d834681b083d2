"""The IO-models lab: every reference server echoes, --quick produces every figure, and a
server that corrupts bytes fails the run."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import pytest
from support import ROOT, ServerProcess, connect, echo_through, require_tool

from geventsrv.bench.cload import Storm
from geventsrv.bench.lab import catalog, measure
from geventsrv.bench.loadgen import Histogram
from geventsrv.bench.report import medians

FIGURES = ("requests_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us",
           "server_cpu_us_per_request", "server_rss_mib", "rss_per_connection_kib",
           "client_cpu_share")  # fmt: skip


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


REFERENCE = [spec for spec in catalog() if spec.name != "geventsrv"]


@pytest.mark.parametrize("spec", REFERENCE, ids=[spec.name for spec in REFERENCE])
def test_every_reference_server_echoes_byte_exact(spec, rng):
    if spec.missing:
        pytest.skip(spec.missing)
    server = ServerProcess(command=spec.command).wait_listening()
    try:
        payload = rng.randbytes(1_500_000)
        with connect(server.address) as sock:
            assert echo_through(sock, payload, rng) == payload
    finally:
        assert server.stop() == 0, server.stderr
    assert "Traceback" not in server.stderr


@pytest.mark.slow
def test_quick_lab_measures_every_server_and_writes_every_output(tmp_path):
    result = bench("--quick", "--duration", "0.3", "--warmup", "0.1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    servers = {spec.name for spec in catalog() if not spec.missing}
    rows = data["medians"]
    assert {row["server"] for row in rows} == servers
    assert {row["connections"] for row in rows} == {1, 10, 100}
    for row in rows:
        assert row["mismatches"] == 0 and row["errors"] == 0, row
        assert row["requests"] > 0, row
        for figure in FIGURES:
            assert row[figure] is not None and math.isfinite(row[figure]), (figure, row)
    for name in ("runs.csv", "medians.csv"):
        assert (tmp_path / name).read_text().count("\n") == len(rows) + 1
    for name in ("throughput.png", "latency_p99.png", "memory_per_connection.png", "storm.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in rows:
        assert row["unserved"] == 0, row  # every connection completed requests
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "Measured on:" in summary and "Rankings between IO models depend on the machine" in summary
    )
    assert summary.count("## 1,024 B,") == 3
    assert "Echo servers: medians over rounds" in result.stdout
    storms = {row["server"]: row for row in data["storm_medians"]}
    assert set(storms) == servers
    for row in storms.values():
        assert row["connections"] == 500 and row["failed"] == 0, row
        assert 0 < row["first_echo_p50_s"] <= row["first_echo_max_s"], row
    assert (tmp_path / "storm.csv").read_text().count("\n") == len(storms) + 1
    assert "Connection storm" in result.stdout
    machine = data["meta"]["machine"]
    assert machine["cpus"] >= 1 and machine["gevent"] and machine["gevent_loop"] and machine["cpu"]


@pytest.mark.parametrize("client", [pytest.param("c", marks=pytest.mark.slow), "python"])
def test_a_server_that_corrupts_bytes_fails_the_lab(tmp_path, client):
    broken = f"broken={sys.executable} {ROOT / 'tests' / 'broken_echo_server.py'} flip 7"
    result = bench(
        "--servers", "geventsrv", "--server", broken, "--sizes", "1024", "--connections", "4",
        "--rounds", "1", "--duration", "0.3", "--warmup", "0.1", "--no-charts",
        "--client", client, "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert json.loads((tmp_path / "results.json").read_text())["meta"]["client"] == client
    assert "FAIL: broken returned wrong bytes" in result.stderr
    rows = {
        row["server"]: row for row in json.loads((tmp_path / "results.json").read_text())["medians"]
    }
    assert rows["broken"]["mismatches"] > 0
    assert rows["geventsrv"]["mismatches"] == 0


def test_c_load_generator_counts_requests_and_latencies_like_the_python_one():
    spec = next(spec for spec in catalog() if spec.name == "geventsrv")
    for client in ("c", "python"):
        run = measure(spec, 2048, 20, duration=0.5, warmup=0.1, client=client)
        assert run["errors"] == 0 and run["mismatches"] == 0, run
        assert run["requests"] > 100 and run["client"] == client
        assert 0 < run["p50_us"] <= run["p99_us"]


def test_a_storm_opens_every_connection_and_holds_them_idle(rng):
    server = ServerProcess("--port", "0").wait_listening()
    try:
        with Storm(server.address, 500, size=100) as storm:
            assert storm.result.ok == 500 and storm.result.failed == 0, storm.result
            assert 0 < storm.result.first_echo_p50 <= storm.result.first_echo_max
            assert server.status()["connections"] == 500  # held open after their echo
    finally:
        assert server.stop() == 0, server.stderr


@pytest.mark.parametrize(
    "args",
    [["--servers", "nginx"], ["--sizes", "0"], ["--server", "noequals"], ["--client", "java"]],
)
def test_bad_arguments_exit_2(args):
    result = bench(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_histogram_percentiles_are_within_two_percent():
    histogram = Histogram()
    for microseconds in range(1, 10_001):
        histogram.add(float(microseconds))
    assert histogram.total == 10_000
    for fraction, exact in ((0.5, 5000), (0.99, 9900), (0.999, 9990)):
        assert exact <= histogram.percentile(fraction) <= exact * 1.03


def test_medians_take_the_middle_round_and_sum_the_errors():
    runs = [
        {"server": "s", "size": 1, "connections": 1, "requests_per_s": rate, "errors": errors,
         "mismatches": 0, "requests": 10, "client_bound": False, "first_error": ""}
        for rate, errors in ((10.0, 0), (30.0, 1), (20.0, 0))
    ]  # fmt: skip
    (row,) = medians(runs)
    assert row["requests_per_s"] == 20.0 and row["errors"] == 1 and row["rounds"] == 3


@pytest.mark.parametrize("hidden", ["rich", "matplotlib"])
def test_without_the_bench_extras_one_line_says_what_to_install(hidden):
    """The library is made unimportable the way Python itself allows (None in sys.modules)."""
    code = (
        f"import sys; sys.modules[{hidden!r}] = None\n"
        "from geventsrv.bench.__main__ import main\n"
        "sys.exit(main(['--quick']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and hidden in lines[0] and "geventsrv[bench]" in lines[0], lines


def test_help_says_what_a_custom_server_must_print():
    result = bench("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "a line holding only the port number" in text


def test_help_lists_every_command_and_each_answers_its_own_help():
    from geventsrv.bench.__main__ import SUBCOMMANDS

    listed = bench("--help").stdout
    for name, (_, summary) in SUBCOMMANDS.items():
        assert f"  {name:<10} {summary}" in listed, name
        assert f"{{{','.join(SUBCOMMANDS)}}}" in listed.splitlines()[0]
        own = bench(name, "--help")
        assert own.returncode == 0 and own.stdout.startswith("usage: "), (name, own.stderr)


@pytest.mark.slow
def test_capacity_search_finds_a_rate_and_charts_it(tmp_path):
    from geventsrv.bench import cload

    try:
        cload.build()
    except cload.BuildError as exc:
        pytest.skip(f"the open loop needs the C load generator: {exc}")
    result = bench(
        "capacity", "--servers", "geventsrv", "--duration", "0.3", "--warmup", "0.1",
        "--max-rate", "12000", "--p99-ms", "50", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "capacity.json").read_text())
    points = data["points"]
    # The search as it went (whether a rate held depends on how busy the machine is): from
    # 5,000/s, half again after a rate that held, halfway back after one that did not.
    assert points[0]["offered_per_s"] == 5000.0
    good, bad = 0.0, 0.0
    for point, after in itertools.pairwise(points):
        rate = point["offered_per_s"]
        good, bad = (rate, bad) if point["held"] else (good, rate)
        expected = rate * 1.5 if point["held"] and not bad else (good + bad) / 2
        assert after["offered_per_s"] == pytest.approx(expected)
    assert all(point["mismatches"] == 0 for point in points)
    held = [point["offered_per_s"] for point in points if point["held"]]
    assert data["results"][0]["max_rate_per_s"] == max(held, default=0.0)
    assert (tmp_path / "capacity.png").stat().st_size > 10_000
    assert "highest rate with p99 <= 50 ms" in result.stdout
    assert data["meta"]["machine"]["gevent"]


@pytest.mark.slow
def test_tls_cost_through_haproxy(tmp_path):
    require_tool("haproxy", "haproxy")
    require_tool("openssl", "openssl")
    out = tmp_path / "tls.json"
    result = bench(
        "tls", "--rounds", "1", "--duration", "0.5", "--connections", "10", "--out", str(out)
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [run["variant"] for run in data["runs"]] == ["plain", "tls"]
    assert all(run["errors"] == 0 and run["requests_per_s"] > 100 for run in data["runs"])
    assert data["medians"]["tls/plain"]["server_cpu_us_per_request"] > 0
    assert data["machine"]["gevent"]


@pytest.mark.slow
def test_ops_cost_runs_every_variant_and_workload(tmp_path):
    out = tmp_path / "ops.json"
    result = bench(
        "ops", "--rounds", "1", "--duration", "0.4", "--connections", "10", "--out", str(out)
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert {(run["variant"], run["workload"]) for run in data["runs"]} == {
        (variant, workload)
        for variant in ("plain", "metrics", "access-log")
        for workload in ("persistent", "churn")
    }
    assert all(run["requests_per_s"] > 50 for run in data["runs"])
    assert data["medians"]["churn plain"]["cpu_vs_plain"] == 1.0


def _row(server, connections, rps, **extra):
    row = dict.fromkeys(FIGURES, 1.0)
    row.update(server=server, size=1024, connections=connections, requests_per_s=rps,
               mismatches=0, errors=0, unserved=0, client_bound=False)  # fmt: skip
    row.update(extra)
    return row


def test_tables_and_summary_mark_failed_and_client_bound_points():
    from geventsrv.bench.report import markdown_tables, summary

    rows = [
        _row("geventsrv", 10, 50_000.0),
        _row("threads", 10, 0.0, errors=3),
        _row("selectors", 10, 100_000.0, client_bound=True),
    ]
    text = markdown_tables(rows, [])
    assert "| threads | failed |" in text  # never drawn as 0 requests/s
    assert "| selectors | 100,000* |" in text
    short = summary(rows, {"machine": {"cpu": "Test CPU", "cpus": 2}})
    assert "Test CPU, 2 cores" in short
    assert "| selectors | 100,000 (client-bound) | 2.00x |" in short
