"""The one server harness: how it finds the port, reads the status line and the process tree."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from geventsrv.testing.process import ServerProcess, parse_listening


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "INFO geventsrv.server: listening on 127.0.0.1:7007 (mode=echo)",
            ("127.0.0.1", 7007),
        ),
        ("INFO worker 2 geventsrv.server: listening on [::1]:41 (mode=echo)", ("::1", 41)),
        ("41913\n", ("", 41913)),
        ("  8080  ", ("", 8080)),
        ("INFO: serving on port 80", None),
        ("status: 1 connection(s) open", None),
    ],
)
def test_parse_listening(line, expected):
    assert parse_listening(line) == expected


def test_a_server_that_prints_only_its_port():
    code = (
        "import socket, signal, sys\n"
        "s = socket.create_server(('127.0.0.1', 0))\n"
        "print(s.getsockname()[1], flush=True)\n"
        "signal.sigwait([signal.SIGTERM])\n"
    )
    with ServerProcess(command=(sys.executable, "-c", code)) as server:
        assert server.port > 0
        with server.connect():
            pass
    assert server.proc.returncode is not None


def test_a_server_that_dies_at_start_raises_with_its_output():
    code = "import sys; print('cannot start: bad config', file=sys.stderr); sys.exit(2)"
    with pytest.raises(RuntimeError, match="cannot start: bad config"):
        ServerProcess(command=(sys.executable, "-c", code)).wait_listening(5)


def test_geventsrv_figures_from_outside():
    with ServerProcess("--port", "0") as server:
        server.round_trip(b"hello")
        # The client has closed, but the server may answer SIGUSR1 before it reads
        # that close: both are ready in the same loop turn. Ask until it has.
        figures = server.status()
        deadline = time.monotonic() + 10
        while figures["connections"] and time.monotonic() < deadline:
            time.sleep(0.02)
            figures = server.status()
        assert figures["accepted"] == 1 and figures["connections"] == 0
        assert figures["fds"] > 0 and figures["rss_kib"] > 1000
        assert server.rss_bytes() > 1 << 20
        assert server.cpu_seconds() > 0
        server.assert_back_to_baseline(figures)
    assert "stopped: 1 connection(s) served" in server.stderr


def test_two_workers_count_as_listening_only_when_both_said_so():
    with ServerProcess("--port", "0", "--workers", "2", listeners=2) as server:
        listening = [line for line in server.lines if "listening on" in line]
        assert len(listening) == 2
        server.round_trip()
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
