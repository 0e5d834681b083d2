"""Start, watch, inspect and stop a server process: one harness for the tests, the lab and the soak.

:class:`ServerProcess` runs a command (by default ``python -m geventsrv``),
collects its output line by line, and knows its port once the server says
where it listens. Two announcements are understood:

* geventsrv's own log line, ``listening on HOST:PORT (...)``;
* for any other server (the lab's reference servers, ``--server NAME=COMMAND``),
  a line holding nothing but the port number, on stdout or stderr.

It reads the server's figures from outside: CPU time and resident memory of
the whole process tree (a supervisor and its workers), open descriptors, and,
for geventsrv, the SIGUSR1 status line (parsed by
:func:`geventsrv.procstats.parse_status`, beside the code that writes it).
Nothing here is monkey-patched, and every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, TypeVar

from geventsrv import procstats

#: How a server under test says where it listens (see the module docstring).
LISTENING = re.compile(r"listening on \[?(?P<host>[^\]\s]+?)\]?:(?P<port>\d+)(?:\s|$)")
PORT_ONLY = re.compile(r"^\s*(?P<port>\d+)\s*$")
START_TIMEOUT = 20.0
CLIENT_TIMEOUT = 10.0
GEVENTSRV = (sys.executable, "-m", "geventsrv")
_Server = TypeVar("_Server", bound="ServerProcess")


def parse_listening(line: str) -> tuple[str, int] | None:
    """``(host, port)`` from a "listening on" or bare port line; host ``""`` if not given."""
    match = LISTENING.search(line) or PORT_ONLY.match(line)
    if match is None:
        return None
    return match.groupdict().get("host") or "", int(match.group("port"))


def connect(address: tuple[str, int], timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    """A blocking client socket with a timeout (for every call), connected to ``address``."""
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(timeout)
    return sock


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


class ServerProcess:
    """A server in a subprocess: ``ServerProcess(*flags)`` runs ``python -m geventsrv *flags``.

    ``command`` replaces ``python -m geventsrv``; ``listeners`` is how many
    processes each announce their port before the server counts as listening
    (a supervisor's workers). :meth:`wait_listening` waits for that.
    """

    def __init__(
        self,
        *args: str,
        command: Sequence[str] = GEVENTSRV,
        listeners: int = 1,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.argv = [*command, *args]
        self.listeners = listeners
        environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=environment,
            preexec_fn=preexec_fn,
        )
        #: Every line of stderr, and of stdout, as it arrived.
        self.lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._announced = 0
        self._listening = threading.Event()
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
            threading.Thread(
                target=self._read, args=(self.proc.stdout, self.stdout_lines), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                into.append(line)
                if not self._listening.is_set():
                    found = parse_listening(line)
                    if found is not None:
                        host, self.port = found
                        self.host = host or self.host
                        self._announced += 1
                        if self._announced >= self.listeners:
                            self._listening.set()
                self._changed.notify_all()

    # -- starting and stopping ---------------------------------------------

    def wait_listening(self: _Server, timeout: float = START_TIMEOUT) -> _Server:
        """Block until the server announced its port; raise with its output if it died."""
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                for reader in self._readers:
                    reader.join(2)
                self.kill()
                raise RuntimeError(f"server did not start: {self.argv}\n{self.output[-2000:]}")
        return self

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for exit; return the exit code once its output has been read."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not go. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self: _Server) -> _Server:
        return self.wait_listening()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- output --------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    @property
    def stdout(self) -> str:
        with self._changed:
            return "".join(self.stdout_lines)

    @property
    def output(self) -> str:
        """stdout then stderr, for error messages."""
        return self.stdout + self.stderr

    def wait_for_log(self, pattern: str, timeout: float = 10.0, after: int = 0) -> re.Match[str]:
        """Wait until a stderr line (from line ``after`` on) matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line matching {pattern!r}:\n{self.stderr}")
                self._changed.wait(min(remaining, 0.1))

    # -- figures -------------------------------------------------------------

    def status(self, timeout: float = 10.0) -> dict[str, int]:
        """Ask for a status line (SIGUSR1) and return its figures, plus ``fds`` from /proc."""
        with self._changed:
            seen = len(self.lines)
        self.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    figures = procstats.parse_status(line)
                    if figures is not None:
                        figures["fds"] = procstats.open_descriptors(self.pid)
                        return figures
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"no status line after SIGUSR1:\n{self.stderr[-2000:]}")
                self._changed.wait(min(remaining, 0.1))

    def assert_back_to_baseline(self, baseline: dict[str, int], timeout: float = 15.0) -> None:
        """Wait until no connection is open and descriptors and greenlets are at ``baseline``."""
        now: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while True:
            now = self.status()
            if (
                now["connections"] == 0
                and now["fds"] <= baseline["fds"]
                and now["greenlets"] <= baseline["greenlets"]
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not back to baseline {baseline}: now {now}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time of the server and every process it started (workers)."""
        return sum(procstats.cpu_seconds(pid) for pid in procstats.process_tree(self.pid))

    def rss_bytes(self) -> int:
        """Resident memory of the server and its workers."""
        return sum(procstats.rss_bytes(pid) for pid in procstats.process_tree(self.pid))

    # -- talking to it ------------------------------------------------------

    def connect(self, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
        """A blocking client socket with a timeout, connected to the server."""
        return connect(self.address, timeout)

    def round_trip(self, payload: bytes = b"still served") -> None:
        """Echo ``payload`` on a fresh connection; raise if it did not come back whole."""
        with self.connect() as sock:
            sock.sendall(payload)
            try:
                got = recv_exactly(sock, len(payload))
            except EOFError as exc:
                raise AssertionError(f"sent {payload!r}: {exc}") from None
        if got != payload:
            raise AssertionError(f"sent {payload!r}, got back {got!r}")
