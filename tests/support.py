"""Test support: run the real server as a subprocess and talk to it over real sockets.

Every client socket made here has a timeout, every wait has a deadline, and
servers bind loopback on port 0.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT = 10.0
START_TIMEOUT = 20.0

_LISTENING = re.compile(r"listening on \[?([^\]\s]+?)\]?:(\d+)(?:\s|$)")
_STATUS = re.compile(
    r"status: (?P<connections>\d+) connection\(s\) open, (?P<greenlets>\d+) greenlet\(s\), "
    r"(?P<descriptors>-?\d+) descriptor\(s\), RSS (?P<rss_kib>\d+) KiB"
)


class ServerProcess:
    """``python -m geventsrv ARGS`` in a subprocess, its stderr collected line by line."""

    def __init__(
        self,
        *args: str,
        preexec_fn: Callable[[], None] | None = None,
        command: Sequence[str] = (sys.executable, "-m", "geventsrv"),
    ) -> None:
        self.argv = [*command, *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="always")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self.host = ""
        self.port = 0
        self._listening = threading.Event()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._stdout_lines: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                match = _LISTENING.search(line)
                if match and not self._listening.is_set():
                    self.host, self.port = match.group(1), int(match.group(2))
                    self._listening.set()
                self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout_lines.append(line)

    def wait_listening(self) -> ServerProcess:
        """Block until the server logged its address; fail with its stderr if it died."""
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(2)
                raise AssertionError(f"server did not start: {self.argv}\n{self.stderr}")
        return self

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout_lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a stderr line matches ``pattern`` (a regex); return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no log line matching {pattern!r}:\n{''.join(self.lines)}"
                    )
                self._changed.wait(min(remaining, 0.1))

    def connect(self, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
        return connect(self.address, timeout)

    def round_trip(self, payload: bytes = b"still served") -> None:
        """Echo ``payload`` on a fresh connection and check it came back whole."""
        with self.connect() as sock:
            sock.sendall(payload)
            assert recv_exactly(sock, len(payload)) == payload

    def status(self, timeout: float = 10.0) -> dict[str, int]:
        """Ask for a status line (SIGUSR1) and return its figures, plus ``fds`` from /proc."""
        with self._changed:
            seen = len(self.lines)
        self.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = _STATUS.search(line)
                    if match:
                        figures = {key: int(value) for key, value in match.groupdict().items()}
                        figures["fds"] = open_fds(self.pid)
                        return figures
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no status line after SIGUSR1:\n{self.stderr}")
                self._changed.wait(min(remaining, 0.1))

    def assert_back_to_baseline(self, baseline: dict[str, int], timeout: float = 15.0) -> None:
        """Wait until no connection is open and descriptors and greenlets are at ``baseline``."""
        now: dict[str, int] = {}

        def settled() -> bool:
            now.update(self.status())
            return (
                now["connections"] == 0
                and now["fds"] <= baseline["fds"]
                and now["greenlets"] <= baseline["greenlets"]
            )

        assert wait_until(settled, timeout, interval=0.2), f"baseline {baseline}, now {now}"

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for exit; return the exit code (and let the reader drain stderr)."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(10)

    @property
    def pid(self) -> int:
        return self.proc.pid


def connect(address: tuple[str, int], timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    """A blocking client socket with a timeout, connected to ``address``."""
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(timeout)
    return sock


def abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def random_chunks(payload: bytes, rng: random.Random, largest: int = 70_000) -> Iterator[bytes]:
    """Split ``payload`` into pieces of random sizes from 1 byte to ``largest``."""
    view = memoryview(payload)
    offset = 0
    while offset < len(payload):
        size = rng.randint(1, largest)
        yield bytes(view[offset : offset + size])
        offset += size


def recv_exactly(sock: socket.socket, size: int, bufsize: int = 65536) -> bytes:
    """Read exactly ``size`` bytes or raise ``EOFError`` with how many arrived."""
    parts: list[bytes] = []
    have = 0
    while have < size:
        data = sock.recv(min(bufsize, size - have))
        if not data:
            raise EOFError(f"connection closed after {have} of {size} bytes")
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def recv_until_eof(sock: socket.socket, bufsize: int = 65536) -> bytes:
    """Read until the peer's FIN; a reset raises."""
    parts = []
    while True:
        data = sock.recv(bufsize)
        if not data:
            return b"".join(parts)
        parts.append(data)


def send_chunks_in_thread(
    sock: socket.socket, chunks: Sequence[bytes] | Iterator[bytes], half_close: bool = True
) -> threading.Thread:
    """Send ``chunks`` from a thread (so the caller can read meanwhile), then SHUT_WR."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # reported by the joiner
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def echo_through(sock: socket.socket, payload: bytes, rng: random.Random) -> bytes:
    """Send ``payload`` in random chunks, half-close, and return all that came back."""
    sender = send_chunks_in_thread(sock, list(random_chunks(payload, rng)))
    # Odd read sizes too, but not 1-byte reads of megabytes.
    sizes = [1, 7, 4096, 65536] if len(payload) < 100_000 else [4093, 65536, 300_000]
    received = recv_until_eof(sock, bufsize=rng.choice(sizes))
    sender.join(CLIENT_TIMEOUT)
    assert not sender.errors, sender.errors  # type: ignore[attr-defined]
    return received


def open_fds(pid: int) -> int:
    """Descriptors the process holds right now (from /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
