"""The live view, driven through a pseudo-terminal as a user at a terminal would."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
from support import ROOT

from geventsrv.stats import CLOSE_REASONS as REASONS
from geventsrv.top import metrics_url, parse


def metrics_base(server) -> str:
    return server.wait_for_log(r"metrics on http://(\S+)/metrics").group(1)


class Terminal:
    """``python -m geventsrv.top ARGS`` on a pseudo-terminal; :meth:`read` what it drew."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, COLUMNS="100", LINES="40", TERM="xterm-256color")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "geventsrv.top", *args],
            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.screen = b""

    def read_until(self, needle: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} never drawn; got:\n{self.screen.decode()}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the process ended and closed the terminal
                    break
        return self.screen

    def wait(self, timeout: float) -> int:
        """The exit code, reading what it draws meanwhile, as a terminal does (a program
        writing to a terminal that nobody reads would block once its buffer is full)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"still running after {timeout} s:\n{self.screen.decode()}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.1))
            if ready:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # it closed the terminal: it is ending
                    self.proc.wait(left)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        opened.append(Terminal(*args))
        return opened[-1]

    yield start
    for term in opened:
        term.close()


def test_live_view_shows_every_worker_and_quits_on_q(start_server, terminal):
    server = start_server("--metrics", "127.0.0.1:0", "--workers", "2", listeners=2)
    view = terminal(metrics_base(server), "--interval", "0.3")
    for _ in range(10):
        server.round_trip()
    screen = view.read_until(b"closed so far").decode()
    assert "accepts/s" in screen and "q or Ctrl-C quits" in screen
    view.read_until(b"\n 2 ")  # a row for worker 2
    os.write(view.master, b"q")
    assert view.wait(5) == 0
    assert b"Traceback" not in view.screen


def test_ctrl_c_quits_cleanly(start_server, terminal):
    server = start_server("--metrics", "127.0.0.1:0")
    view = terminal(metrics_base(server), "--interval", "0.3")
    view.read_until(b"closed so far")
    view.proc.send_signal(signal.SIGINT)
    assert view.wait(5) == 0
    assert b"Traceback" not in view.screen


def test_a_url_that_does_not_answer(terminal):
    view = terminal("127.0.0.1:1")
    assert view.proc.wait(10) == 1
    screen = view.read_until(b"does not answer")
    assert b"python -m geventsrv.top: error: http://127.0.0.1:1/metrics does not answer" in screen


def test_once_counts_accepts_per_second(start_server):
    server = start_server("--metrics", "127.0.0.1:0")
    base = metrics_base(server)
    done = threading.Event()
    made: list[float] = []

    def clients() -> None:  # a steady trickle of connections, all through the view's window
        while not done.is_set() and len(made) < 2000:
            server.round_trip()
            made.append(time.monotonic())
            time.sleep(0.01)

    trickle = threading.Thread(target=clients)
    trickle.start()
    try:
        out = once(base, interval=1.0)
    finally:
        done.set()
        trickle.join(10)
    row = next(line.split() for line in out.splitlines() if line.startswith(" -"))
    accepts_per_s = float(row[3].replace(",", ""))  # worker, ready, open, accepts/s
    # About one connection per 10 ms, fewer on a busy machine; never more than were made.
    assert 5 <= accepts_per_s <= len(made)


def once(url: str, columns: int = 100, interval: float = 0.2) -> str:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv.top", url, "--once", "--interval", str(interval)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, COLUMNS=str(columns)),
        timeout=20,
    ).stdout  # fmt: skip


def test_once_fits_80_columns_with_every_heading_whole(start_server):
    server = start_server("--metrics", "127.0.0.1:0", "--workers", "2", listeners=2)
    out = once(metrics_base(server), columns=80)
    assert "…" not in out, out
    for heading in ("accepts/s", "mean lag", "blocked", *REASONS):
        assert heading in out, (heading, out)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "quits" not in out  # --once does not wait for a key


def test_an_echo_port_is_not_a_metrics_endpoint(start_server):
    """The echo port sends back the GET: one line saying so, exit 1, not BadStatusLine."""
    server = start_server()
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.top", f"127.0.0.1:{server.port}", "--once"],
        capture_output=True, text=True, cwd=ROOT, timeout=20,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not a metrics endpoint" in result.stderr


def test_url_forms():
    assert metrics_url("127.0.0.1:9107") == "http://127.0.0.1:9107/metrics"
    assert metrics_url("http://[::1]:9107/") == "http://[::1]:9107/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"


def test_parse_groups_samples_by_worker():
    text = (
        'geventsrv_connections_open{worker="1"} 3\n'
        'geventsrv_connections_open{worker="2"} 4\n'
        'geventsrv_connections_closed_total{reason="idle",worker="2"} 7\n'
        "geventsrv_workers_answering 2\n"
    )
    scrape = parse(text, at=1.0)
    assert list(scrape.workers) == ["1", "2"]
    assert scrape.workers["2"].open == 4 and scrape.workers["2"].closed == {"idle": 7}
