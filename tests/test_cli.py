"""Command-line behaviour: flags to Config in-process, errors and exit codes as a user sees them."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from support import ROOT

from geventsrv.config import DEFAULT_PORT, Config
from geventsrv.exitcodes import CANNOT_LISTEN as EXIT_CANNOT_LISTEN
from geventsrv.exitcodes import USAGE as EXIT_USAGE
from geventsrv.flags import parse_config


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str):
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("geventsrv: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_defaults_match_config():
    config = parse_config([])
    assert config == Config()
    assert (config.host, config.port, config.mode) == ("127.0.0.1", DEFAULT_PORT, "echo")


def test_flags_build_the_same_config_as_the_api():
    config = parse_config(
        [
            *("--host", "::1", "--port", "0", "--mode", "upper", "--backlog", "10"),
            *("--max-conns", "5", "--idle-timeout", "2.5", "--drain-timeout", "0"),
            *("--log-level", "debug"),
        ]
    )
    assert config == Config(
        host="::1",
        port=0,
        mode="upper",
        backlog=10,
        max_conns=5,
        idle_timeout=2.5,
        drain_timeout=0.0,
        log_level="debug",
    )


def test_idle_timeout_zero_means_never():
    assert parse_config(["--idle-timeout", "0"]).idle_timeout is None


def test_help_documents_every_flag_and_the_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    for mode in ("echo", "info", "chat", "HTTP"):  # the description names every kind of mode
        assert mode in result.stdout.split("options:")[0], mode
    for flag in (
        "--host",
        "--port",
        "--mode",
        "--backlog",
        "--max-conns",
        "--idle-timeout",
        "--drain-timeout",
        "--log-level",
    ):
        assert flag in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.parametrize("port", ["70000", "-1", "abc", "65536", "1.5"])
def test_bad_port_is_one_line_and_exit_2(port):
    assert_one_line_error(run_cli("--port", port), EXIT_USAGE, "argument --port: must be", port)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mode", "shout"], "--mode"),
        (["--max-conns", "0"], "--max-conns"),
        (["--max-conns", "99999999999"], "argument --max-conns: must be a whole number from 1"),
        (["--backlog", "3000000000"], "argument --backlog: must be a whole number from 1"),
        (["--workers", "100000"], "argument --workers: must be a whole number from 1 to 1024"),
        (["--tls-key", "key.pem"], "argument --tls-key: needs --tls-cert"),
        (["--tls-alpn", "h2"], "argument --tls-alpn: needs --tls-cert"),
        (["--tls-handshake-timeout", "3"], "argument --tls-handshake-timeout: needs --tls-cert"),
        (
            ["--proxy-allow-from", "10.0.0.0/8"],
            "argument --proxy-allow-from: needs --proxy-protocol",
        ),
        (["--proxy-timeout", "2"], "argument --proxy-timeout: needs --proxy-protocol"),
        (["--http-max-body", "10"], "argument --http-max-body: applies to --mode http only"),
        (["--ws-max-message", "10"], "argument --ws-max-message: applies to --mode http only"),
        (
            ["--mode", "http", "--http-max-delay", "3601"],
            "argument --http-max-delay: must be a "
            "number, 0 or more, of seconds, at most 3600, got 3601.0",
        ),
        (["--metrics", "nowhere"], "argument --metrics: must be HOST:PORT"),
        (["--udp", "--udp-only"], "argument --udp-only: not allowed with argument --udp"),
        (["--backlog", "x"], "--backlog"),
        (["--idle-timeout", "-3"], "--idle-timeout"),
        (["--drain-timeout", "nan"], "--drain-timeout"),
        (["--no-such-flag"], "--no-such-flag"),
        (["stray"], "stray"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args, needle):
    assert_one_line_error(run_cli(*args), EXIT_USAGE, needle)


def test_address_in_use_names_the_address_and_exits_3():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port))
    assert_one_line_error(result, EXIT_CANNOT_LISTEN, f"127.0.0.1:{port}", "in use")


def test_address_not_available_exits_3():
    # 192.0.2.1 is reserved for documentation (TEST-NET-1): never a local address.
    result = run_cli("--host", "192.0.2.1", "--port", "0")
    assert_one_line_error(result, EXIT_CANNOT_LISTEN, "192.0.2.1:0", "cannot assign")


def test_unknown_host_exits_3():
    result = run_cli("--host", "no-such-host.invalid", "--port", "0")
    assert_one_line_error(result, EXIT_CANNOT_LISTEN, "no-such-host.invalid:0")


def test_privileged_port_without_permission_exits_3():
    import os

    if os.geteuid() == 0:
        pytest.skip("root may bind privileged ports")
    assert_one_line_error(run_cli("--port", "7"), EXIT_CANNOT_LISTEN, "127.0.0.1:7")


def documented_errors() -> set[str]:
    """Every ``geventsrv: error: ...`` line README and the docs show."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {
        line
        for page in pages
        for line in re.findall(r"geventsrv: error: [^`\n]+", page.read_text())
    }


def test_the_documented_error_messages_are_the_real_ones(tmp_path, certs):
    """The docs quote messages a user will grep for: each is what the command says."""
    import os
    import shutil

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    shutil.copy(certs.unrelated_key, key)
    shutil.copy(certs.server_cert, cert)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        from_environment = subprocess.run(
            [sys.executable, "-m", "geventsrv"], capture_output=True, text=True, timeout=20,
            cwd=ROOT, env=dict(os.environ, GEVENTSRV_PORT="70000"),
        )  # fmt: skip
        mismatch = run_cli("--tls-cert", str(cert), "--tls-key", str(key)).stderr.strip()
        said = {
            run_cli("--port", "70000").stderr.strip(),
            from_environment.stderr.strip(),
            mismatch.replace(str(key), "/etc/k.pem").replace(str(cert), "/etc/c.pem"),
            run_cli("--port", str(port)).stderr.strip().replace(str(port), "7007"),
        }
    missing = {line for line in documented_errors() if "geventsrv.client" not in line} - said
    assert not missing, (missing, said)
