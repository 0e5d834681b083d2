"""``python -m geventsrv.bench grpc``: every peer echoes the same call, and a run reports them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import require_tool

from geventsrv.bench import grpcbench

pytest.importorskip("grpc")


def test_the_echo_passes_the_check_and_a_server_that_is_not_one_is_caught(start_server):
    tried = grpcbench.HttpServer("tried", ())
    grpcbench.check_echo(tried, start_server("--mode", "http").port)
    tcp_echo = start_server("--idle-timeout", "1")  # no HTTP/2, no gRPC
    with pytest.raises(grpcbench.BenchError, match="tried: the echo failed"):
        grpcbench.check_echo(tried, tcp_echo.port)


def test_the_unary_body_is_one_framed_64_byte_message():
    assert len(grpcbench.MESSAGE) == 64
    assert grpcbench.FRAMED == b"\0\0\0\0\x40" + grpcbench.MESSAGE


def test_an_unknown_workload_is_one_line_and_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "grpc", "--workloads", "ping"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown workload or server: ping" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_quick_run_measures_every_server_on_both_workloads(tmp_path):
    require_tool("h2load", "nghttp2-client")
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "grpc", "--quick", "--duration", "1",
         "--warmup", "0", "--connections", "4", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "grpc.json").read_text())
    assert report["meta"]["machine"]["gevent"]
    rows = {(row["workload"], row["server"]): row for row in report["rows"]}
    assert set(rows) == {
        (workload, server.name) for workload in grpcbench.WORKLOADS for server in grpcbench.SERVERS
    }
    for row in rows.values():
        assert row["requests_per_s"] > 0 and row["errors"] == 0 and row["cpu_us_per_request"] > 0
    assert "| grpcio-asyncio |" in (tmp_path / "grpc.md").read_text()
