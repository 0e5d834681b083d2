"""``python -m geventsrv.bench http``: every peer gives the same answers, and a run reports them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from support import require_tool

from geventsrv.bench import httpbench


def test_a_server_that_answers_otherwise_is_caught(start_server):
    echo = start_server("--idle-timeout", "1")  # echoes the request back, then times out
    with pytest.raises(httpbench.BenchError, match="was answered"):
        httpbench.check_answers(httpbench.SERVERS[0], echo.port, "h1")


def test_a_server_of_files_is_given_both_answers_to_serve():
    """nghttpd serves the workloads from files: the small one is the pattern, the
    reflection a real document of the same shape as the server's own."""
    nghttpd = next(server for server in httpbench.SERVERS if server.static)
    folder = httpbench.docroot()
    try:
        assert (folder / "small").read_bytes() == httpbench.PATTERN[:40]
        document = json.loads((folder / "reflect").read_bytes())
        assert document["request"]["method"] == "GET" and "server" in document
        assert nghttpd.target("reflect") == "/reflect"
    finally:
        shutil.rmtree(folder)


def test_an_unknown_server_is_one_line_and_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "http", "--servers", "nginx"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown workload, server or protocol: nginx" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_quick_run_measures_every_server_and_records_the_machine(tmp_path):
    """Each peer is started as the lab starts it and must pass the same check of both
    answers before it is measured (a wrong answer exits 1)."""
    require_tool("wrk", "wrk")
    require_tool("h2load", "nghttp2-client")
    require_tool("nghttpd", "nghttp2-server")
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "http", "--quick", "--duration", "1",
         "--warmup", "0", "--connections", "5", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "http.json").read_text())
    assert report["meta"]["machine"]["cpu"] and report["meta"]["machine"]["gevent"]
    rows = {(row["protocol"], row["workload"], row["server"]): row for row in report["rows"]}
    expected = {
        (protocol, workload, server.name)
        for server in httpbench.SERVERS
        for protocol in server.protocols
        for workload in httpbench.WORKLOADS
    }
    assert expected == set(rows)
    for row in rows.values():
        assert row["requests_per_s"] > 0 and row["errors"] == 0
        assert row["cpu_us_per_request"] > 0
    assert "| geventsrv |" in (tmp_path / "http.md").read_text()


def test_an_unknown_protocol_is_one_line_and_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "http", "--protocols", "h3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown workload, server or protocol: h3" in result.stderr


def test_rounds_rotate_the_servers_order_and_skip_what_a_server_does_not_serve(capsys):
    servers = [httpbench.HttpServer(name, ("true",)) for name in ("a", "b", "c")]
    seen = []

    def measure(server, protocol, workload):
        if server.name == "c" and protocol == "h2c":
            return None
        seen.append(server.name)
        return {"requests_per_s": 10.0, "cpu_us_per_request": None}

    runs = httpbench.interleaved(2, servers, [("h1", "small"), ("h2c", "small")], measure)
    assert seen == ["a", "b", "c", "a", "b", "b", "c", "a", "b", "a"]
    assert [run["round"] for run in runs] == [1] * 5 + [2] * 5
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 10 and printed[0].startswith("round 1/2 h1")
