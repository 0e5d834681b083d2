"""``python -m geventsrv.bench http3``: both servers answer the same over HTTP/3, and a run
reports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from geventsrv.bench import h3bench

pytest.importorskip("curl_cffi")
pytest.importorskip("aioquic")  # HTTP/3 itself (Python 3.11 and later)


def test_the_answers_pass_the_check_and_a_wrong_one_is_caught(start_server, certs, tmp_path):
    tried = h3bench.HttpServer("tried", ())
    server = start_server("--mode", "http", "--tls-cert", certs.server, "--http3")
    h3bench.check_answers(tried, server.port)
    cert, key = h3bench.certificate(tmp_path)
    assert "BEGIN CERTIFICATE" in Path(cert).read_text() and "PRIVATE KEY" in Path(key).read_text()
    other = start_server("--mode", "http", "--tls-cert", cert, "--tls-key", key, "--http3")
    with pytest.raises(h3bench.BenchError, match="over HTTP/3 was answered 404"):
        h3bench.get(other.port, "/status/404")


def test_an_unknown_workload_is_one_line_and_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "http3", "--workloads", "ping"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown workload: ping" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_quick_run_measures_both_servers_and_the_echo(tmp_path):
    pytest.importorskip("hypercorn")
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "http3", "--quick", "--duration", "1",
         "--warmup", "0", "--connections", "4", "--transfer", "1000000", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "http3.json").read_text())
    rows = {(row["workload"], row["server"]): row for row in report["rows"]}
    assert set(rows) == {(workload, server) for workload in h3bench.WORKLOADS
                         for server in ("geventsrv", "hypercorn-uvloop")}  # fmt: skip
    for row in rows.values():
        assert row["requests_per_s"] > 0 and row["errors"] == 0 and row["cpu_us_per_request"] > 0
    transfer = report["meta"]["transfer"]
    assert transfer["echo_mb_per_s"] > 0
    assert set(transfer["datagrams"]) == {name for name, _ in h3bench.DATAGRAMS} | {
        h3bench.LARGE_CLIENT}  # fmt: skip
    assert all(each["echo_mb_per_s"] > 0 and each["errors"] == 0
               for each in transfer["datagrams"].values())  # fmt: skip
    assert transfer["datagrams"][h3bench.LARGE_CLIENT]["download_mb_per_s"] is None
    assert "| hypercorn-uvloop |" in (tmp_path / "http3.md").read_text()
