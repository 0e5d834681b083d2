"""systemd with its real tools: socket activation (systemd-socket-activate), the notify
protocol (a notify socket the test listens on), and the shipped units (systemd-analyze)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys

import pytest
from support import ROOT, ServerProcess, connect, free_port, recv_exactly, require_tool

from geventsrv.flags import parse_config
from geventsrv.systemd import Notifier, activated_sockets

CONTRIB = ROOT / "contrib" / "systemd"


def activate(*args: str, datagram: bool = False) -> tuple[ServerProcess, tuple[str, int]]:
    """``systemd-socket-activate -l 127.0.0.1:PORT python -m geventsrv ARGS``."""
    tool = require_tool("systemd-socket-activate", "systemd")
    port = free_port()
    command = [tool, "-l", f"127.0.0.1:{port}"]
    if datagram:
        command.append("--datagram")
    server = ServerProcess(*args, command=[*command, sys.executable, "-m", "geventsrv"])
    # The tool listens first and starts geventsrv on the first connection (or datagram).
    server.wait_for_log("Listening on")
    return server, ("127.0.0.1", port)


def test_tcp_socket_activation(request):
    server, address = activate("--port", "1")  # the port flag is ignored: the socket is given
    request.addfinalizer(server.stop)
    with connect(address) as sock:
        sock.sendall(b"activated")
        assert recv_exactly(sock, 9) == b"activated"
    line = server.wait_for_log("listening on").string
    assert f"127.0.0.1:{address[1]}" in line
    server.round_trip(b"again")


def test_udp_socket_activation(request):
    server, address = activate("--udp-only", datagram=True)
    request.addfinalizer(server.stop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(b"datagram", address)
        assert sock.recv(100) == b"datagram"
    assert "udp" in server.wait_for_log("listening on").string


def test_workers_with_activation_are_refused_in_one_line(request):
    server, address = activate("--workers", "2")
    request.addfinalizer(server.stop)
    with connect(address) as sock, contextlib.suppress(ConnectionResetError):
        # Nobody serves it: closed (or reset, with the queue) when the process exits.
        assert sock.recv(10) == b""
    assert server.wait(10) == 2
    errors = [line for line in server.lines if line.startswith("geventsrv")]
    assert errors == [
        "geventsrv: error: argument --workers: socket activation hands its sockets to one "
        "process: use --workers 1 (for more cores, one service instance per CPU) (see --help)\n"
    ]


def test_notify_ready_status_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(10)
        server = ServerProcess("--port", "0", env={"NOTIFY_SOCKET": path}).wait_listening()
        try:
            ready = listener.recv(4096).decode().split("\n")
            assert ready[0] == "READY=1"
            assert ready[1] == f"STATUS=listening on 127.0.0.1:{server.address[1]}"
            server.send_signal(signal.SIGTERM)
            stopping = listener.recv(4096).decode().split("\n")
            assert stopping[0] == "STOPPING=1"
            assert server.wait(10) == 0
        finally:
            server.stop()


def test_notifier_abstract_socket_and_absence():
    name = f"geventsrv-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        Notifier({"NOTIFY_SOCKET": "@" + name}).send("READY=1", "STATUS=hi")
        assert listener.recv(100) == b"READY=1\nSTATUS=hi"
    silent = Notifier({})
    assert not silent.enabled
    silent.send("READY=1")  # no socket, no error


def test_activation_variables_for_another_process_are_ignored():
    assert activated_sockets({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) is None
    assert activated_sockets({}) is None


def documented_install() -> str:
    """The install command docs/operations.md gives for the service unit."""
    text = (ROOT / "docs" / "operations.md").read_text()
    block = text.split("<!-- systemd-install -->", 1)[1].split("<!-- /systemd-install -->")[0]
    return next(line for line in block.splitlines() if line.startswith("python3 -m venv"))


@pytest.mark.slow
def test_shipped_units_verify_after_the_documented_install():
    """The units exactly as shipped, on a machine where the docs' install was made.

    verify checks that ExecStart's program exists and is executable: the test
    makes the documented install (root only) where it is missing.
    """
    analyze = require_tool("systemd-analyze", "systemd")
    service = (CONTRIB / "geventsrv.service").read_text()
    program = next(
        line.split("=", 1)[1].split()[0]
        for line in service.splitlines()
        if line.startswith("ExecStart=")
    )
    install = documented_install()
    assert program.startswith(install.split()[3])  # the venv the docs make holds the program
    if not os.access(program, os.X_OK):
        if os.geteuid() != 0:
            pytest.skip(f"{program} is not installed, and installing it needs root: {install}")
        done = subprocess.run(
            ["sh", "-c", install], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(CONTRIB / "geventsrv.socket"),
         str(CONTRIB / "geventsrv.service")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Unknown or misspelt settings are only warned about: there must be none.
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr


def test_service_flags_parse():
    """The ExecStart line's flags are ones geventsrv takes, with values it accepts."""
    service = (CONTRIB / "geventsrv.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    config = parse_config(exec_start.split()[1:], {})
    assert config.metrics == "127.0.0.1:9107" and config.shutdown_delay == 5
