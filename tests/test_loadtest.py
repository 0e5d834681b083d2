"""The locust scripts in loadtest/: they load a real server, and they catch a wrong echo."""

from __future__ import annotations

import csv
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, free_port

# Locust runs (a minute of them): on the oldest and newest Python, locust's two versions.
pytestmark = pytest.mark.edges

# Looked up, not imported: importing locust monkey-patches the importing process.
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed", allow_module_level=True)

RUN_SECONDS = 4


def locust(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run locust headless on loadtest/; whatever happens, its output has no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest"), "--headless", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def stats_rows(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {f"{row['Type']} {row['Name']}".strip(): row for row in csv.DictReader(handle)}


def failures_text(prefix: Path) -> str:
    return Path(f"{prefix}_failures.csv").read_text()


@pytest.fixture
def broken_server():
    """Start tests/broken_echo_server.py MODE N; yields its tcp:// host."""
    processes = []

    def start(mode: str, n: int) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "broken_echo_server.py"), mode, str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(proc)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        return f"tcp://127.0.0.1:{port}"

    yield start
    for proc in processes:
        proc.kill()
        proc.wait(10)


def test_headless_run_against_geventsrv_has_no_failures(start_server, tmp_path):
    server = start_server()
    prefix = tmp_path / "run"
    html = tmp_path / "report.html"
    result = locust(
        "-H", f"tcp://127.0.0.1:{server.port}", "-u", "20", "-r", "20", "-t", f"{RUN_SECONDS}s",
        "--csv", str(prefix), "--html", str(html), "--only-summary",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0
    assert int(total["Request Count"]) >= 1000
    for name in ("ECHO persistent 1024 B", "ECHO new connection 1024 B", "ECHO large 262144 B"):
        assert int(rows[name]["Request Count"]) > 0, name
    assert html.stat().st_size > 10_000 and "<html" in html.read_text()[:2000].lower()
    assert "the server is not in chat mode; chat users stop" in result.stderr


def test_message_size_option_changes_what_is_sent(start_server, tmp_path):
    server = start_server()
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"tcp://127.0.0.1:{server.port}", "-u", "2", "-r", "2", "-t", "2s",
        "--csv", str(prefix), "--message-size", "100", "PersistentEchoUser",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["ECHO persistent 100 B"]["Request Count"]) > 0
    assert "ECHO large 262144 B" not in rows  # only the user class named ran


def test_a_flipped_byte_is_a_failure_and_exit_1(broken_server, tmp_path):
    host = broken_server("flip", 50)
    prefix = tmp_path / "run"
    result = locust(
        "-H", host, "-u", "5", "-r", "5", "-t", "3s", "--csv", str(prefix), "PersistentEchoUser"
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert int(stats_rows(prefix)["Aggregated"]["Failure Count"]) > 0
    assert "reply differs from request at byte 0 of 1024" in failures_text(prefix)


def test_an_early_close_is_a_failure_and_exit_1(broken_server, tmp_path):
    host = broken_server("close", 5000)
    prefix = tmp_path / "run"
    result = locust(
        "-H", host, "-u", "3", "-r", "3", "-t", "3s", "--csv", str(prefix), "PersistentEchoUser"
    )
    assert result.returncode == 1
    assert "connection closed after 904 of 1024 reply bytes" in failures_text(prefix)


def test_no_server_is_a_failure_not_a_crash(tmp_path):
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"tcp://127.0.0.1:{port}", "-u", "2", "-r", "2", "-t", "2s",
        "--csv", str(prefix), "PersistentEchoUser",
    )  # fmt: skip
    assert result.returncode == 1
    assert "ConnectionRefusedError" in failures_text(prefix)
    assert "Traceback" not in result.stderr
    # Each user backs off (50 ms doubling to 2 s): a handful of attempts in 2 s,
    # not tens of thousands. A busy machine only makes fewer.
    assert int(stats_rows(prefix)["CONNECT connect"]["Failure Count"]) <= 2 * 8


@pytest.mark.parametrize("ca", ["missing", "not-pem"])
def test_a_bad_tls_ca_is_one_line_and_exit_2_before_any_user(tmp_path, ca):
    path = tmp_path / "ca.pem"
    if ca == "not-pem":
        path.write_text("not a certificate\n")
    result = locust("-H", "tls://127.0.0.1:1", "--tls-ca", str(path), "-u", "3", "-r", "3")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"--tls-ca {path}:" in errors[0], result.stderr


@pytest.mark.parametrize(
    ("host", "users", "limit"),
    [
        ("ftp://127.0.0.1:80", (), ("-t", "5s")),  # no user takes it
        ("ftp://127.0.0.1:80", (), ()),
        ("http://127.0.0.1:80", ("PersistentEchoUser",), ()),  # the echo users do not
        ("tcp://127.0.0.1:80", ("ReflectedRequestUser",), ()),  # nor the HTTP users this
    ],
    ids=["with -t", "without -t", "http for echo users", "tcp for http users"],
)
def test_a_host_no_user_of_the_run_takes_stops_it_at_once_with_exit_2(host, users, limit):
    """Without -t a headless run would otherwise go on for ever (the timeout would fail it)."""
    result = locust("-H", host, "-u", "1", "-r", "1", *limit, *users, timeout=30)
    assert result.returncode == 2
    assert (
        "host must be tcp://HOST:PORT, tls://HOST:PORT or HOST:PORT (the echo and chat users), "
        "http://, https://, ws:// or wss://HOST:PORT (the HTTP and WebSocket users), or "
        f"grpc:// or grpcs://HOST:PORT (the gRPC user), got '{host}'"
    ) in result.stderr


def test_a_malformed_echo_host_is_named(tmp_path):
    result = locust("-H", "tcp://127.0.0.1:port", "-u", "1", "-r", "1", timeout=30)
    assert result.returncode == 2
    assert "got 'tcp://127.0.0.1:port'" in result.stderr


@pytest.mark.parametrize("scheme", ["http", "ws", "tcp"])
def test_a_run_of_every_user_is_made_of_those_that_speak_to_the_host(
    start_server, tmp_path, scheme
):
    """locust -f loadtest/ -H http://... must not start echo and chat users that stop at
    once, leaving their share of -u idle; -H tcp://... the same for the HTTP users."""
    server = start_server("--mode", "echo" if scheme == "tcp" else "http")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"{scheme}://127.0.0.1:{server.port}", "-u", "4", "-r", "4", "-t", "2s",
        "--csv", str(prefix),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    names = set(stats_rows(prefix)) - {"Aggregated"}
    web = {name for name in names if "reflect" in name or name.startswith("WS ")}
    if scheme == "tcp":
        assert names and not web, names
    else:
        assert names == web and any(name.startswith("WS ") for name in names), names
        assert (scheme == "http") == any("reflect" in name for name in names), names


@pytest.mark.slow
def test_processes_2_aggregates_both_workers(start_server, tmp_path):
    server = start_server()
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"tcp://127.0.0.1:{server.port}", "--processes", "2", "-u", "10", "-r", "10",
        "-t", "3s", "--csv", str(prefix), "--master-bind-host", "127.0.0.1",
        "--master-bind-port", str(port := free_port()), "--master-port", str(port),
        "PersistentEchoUser",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    total = stats_rows(prefix)["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0
    assert "2 workers connected" in result.stderr


@pytest.mark.slow
def test_master_and_two_workers_on_loopback(start_server, tmp_path):
    server = start_server()
    master_port = free_port()
    prefix = tmp_path / "run"
    common = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest")]
    master = subprocess.Popen(
        [
            *common, "--master", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(master_port), "--expect-workers", "2", "--headless",
            "-H", f"tcp://127.0.0.1:{server.port}", "-u", "10", "-r", "10", "-t", "3s",
            "--csv", str(prefix), "PersistentEchoUser",
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker_argv = [*common, "--worker", "--master-host", "127.0.0.1"]
    worker_argv += ["--master-port", str(master_port), "PersistentEchoUser"]
    workers = [
        subprocess.Popen(
            worker_argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    try:
        _, stderr = master.communicate(timeout=60)
    finally:
        for worker in workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
    assert master.returncode == 0, stderr[-3000:]
    total = stats_rows(prefix)["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0
    assert "2 workers connected" in stderr
    assert "to 2 ready workers" in stderr


def test_chat_users_hear_each_other_against_chat_mode(start_server, tmp_path):
    server = start_server("--mode", "chat")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"tcp://127.0.0.1:{server.port}", "-u", "10", "-r", "10", "-t", "4s",
        "--csv", str(prefix), "ChatUser",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    said = int(rows["CHAT say"]["Request Count"])
    heard = int(rows["CHAT deliver"]["Request Count"])
    assert said > 0 and heard >= said  # each line reaches up to 9 others


def test_the_web_ui_starts_a_swarm_and_shows_its_stats(start_server):
    """`locust -f loadtest/` with the web UI, driven through its own HTTP endpoints."""
    import json
    import time
    import urllib.parse
    import urllib.request

    server = start_server()
    web_port = free_port()
    ui = subprocess.Popen(
        [
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest"),
            "--web-host", "127.0.0.1", "--web-port", str(web_port),
            "-H", f"tcp://127.0.0.1:{server.port}", "PersistentEchoUser",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{web_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the web UI did not come up"
                time.sleep(0.2)
        form = urllib.parse.urlencode({"user_count": 5, "spawn_rate": 5}).encode()
        with urllib.request.urlopen(base + "/swarm", data=form, timeout=5) as reply:
            assert json.load(reply)["success"] is True
        time.sleep(2)
        with urllib.request.urlopen(base + "/stats/requests", timeout=5) as reply:
            stats = {row["name"]: row for row in json.load(reply)["stats"]}
        assert stats["persistent 1024 B"]["num_requests"] > 0
        assert stats["Aggregated"]["num_failures"] == 0
    finally:
        ui.terminate()
        ui.wait(20)


@pytest.mark.parametrize("trust", ["ca", "no-verify"])
def test_tls_host_verifies_every_byte(start_server, certs, tmp_path, trust):
    server = start_server("--tls-cert", certs.server)
    prefix = tmp_path / "run"
    how = ["--tls-ca", certs.ca] if trust == "ca" else ["--tls-no-verify"]
    result = locust(
        "-H", f"tls://127.0.0.1:{server.port}", *how, "-u", "4", "-r", "4", "-t", "3s",
        "--csv", str(prefix), "PersistentEchoUser", "ChurnEchoUser",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["ECHO persistent 1024 B"]["Request Count"]) > 100
    assert int(rows["ECHO new connection 1024 B"]["Request Count"]) > 10


def test_tls_host_with_an_untrusted_certificate_fails_the_run(start_server, certs, tmp_path):
    server = start_server("--tls-cert", certs.server)
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"tls://127.0.0.1:{server.port}", "-u", "2", "-r", "2", "-t", "2s",
        "--csv", str(prefix), "PersistentEchoUser",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "CERTIFICATE_VERIFY_FAILED" in failures_text(prefix)


@pytest.mark.slow
def test_http_users_check_every_reflection_headless_and_over_two_processes(start_server, tmp_path):
    server = start_server("--mode", "http")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"http://127.0.0.1:{server.port}", "-u", "4", "-r", "4", "-t", "3s",
        "--processes", "2", "--csv", str(prefix), "ReflectedRequestUser",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["POST POST /reflect"]["Request Count"]) > 50
    assert int(rows["Aggregated"]["Failure Count"]) == 0


def test_http_users_catch_a_server_that_is_not_a_reflector(start_server, tmp_path):
    """Against the info mode's JSON line, or anything else, every request is a failure."""
    server = start_server("--mode", "echo")  # echoes the request back: not a reflection
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"http://127.0.0.1:{server.port}", "-u", "1", "-r", "1", "-t", "2s",
        "--csv", str(prefix), "ReflectedRequestUser",
    )  # fmt: skip
    assert result.returncode == 1
    assert int(stats_rows(prefix)["Aggregated"]["Failure Count"]) > 0


@pytest.mark.slow
def test_websocket_users_check_every_echo_headless_and_over_two_processes(start_server, tmp_path):
    server = start_server("--mode", "http")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"http://127.0.0.1:{server.port}", "-u", "4", "-r", "4", "-t", "3s",
        "--processes", "2", "--csv", str(prefix), "WebSocketEchoUser",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    assert int(rows["WS echo text"]["Request Count"]) > 0
    assert int(rows["WS echo binary"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0


def test_websocket_users_catch_an_echo_that_changes_the_message(start_server, tmp_path):
    """Against a server that answers the upgrade but echoes every byte raw (the echo mode
    echoes the client's masked frames back), every exchange fails."""
    server = start_server("--mode", "echo")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"http://127.0.0.1:{server.port}", "-u", "1", "-r", "1", "-t", "2s",
        "--csv", str(prefix), "WebSocketEchoUser",
    )  # fmt: skip
    assert result.returncode == 1


@pytest.mark.slow
def test_grpc_users_check_every_echo_headless_and_over_two_processes(start_server, tmp_path):
    server = start_server("--mode", "http")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"grpc://127.0.0.1:{server.port}", "-u", "4", "-r", "4", "-t", "3s",
        "--processes", "2", "--csv", str(prefix),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(prefix)
    assert set(rows) == {"gRPC Echo/Unary", "Aggregated"}  # the gRPC user alone takes grpc://
    assert int(rows["gRPC Echo/Unary"]["Request Count"]) > 50
    assert int(rows["Aggregated"]["Failure Count"]) == 0


def test_grpc_users_catch_a_server_that_is_not_a_grpc_echo(start_server, tmp_path):
    """Against the TCP echo (it sends the client's HTTP/2 preface back), every call fails."""
    server = start_server("--mode", "echo")
    prefix = tmp_path / "run"
    result = locust(
        "-H", f"grpc://127.0.0.1:{server.port}", "-u", "1", "-r", "1", "-t", "2s",
        "--csv", str(prefix), "GrpcEchoUser",
    )  # fmt: skip
    assert result.returncode == 1
    assert int(stats_rows(prefix)["Aggregated"]["Failure Count"]) > 0
