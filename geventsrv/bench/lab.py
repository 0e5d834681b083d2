"""Run one server under one load and measure it: the lab's unit of work.

:func:`measure` starts the server in its own process on port 0, opens the
connections from :mod:`geventsrv.bench.loadgen` worker processes, lets the load
warm up, then measures a window: requests and latency from the workers, CPU
time and memory of the server process from ``/proc``. Then it stops the server.
Nothing here is monkey-patched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from geventsrv.bench import cload
from geventsrv.bench.loadgen import Histogram, WorkerResult, run_worker

PY = sys.executable
_SERVERS = "geventsrv.bench.servers."


@dataclass(frozen=True)
class ServerSpec:
    """A server under test: a name, the command that starts it, and whether it can run here."""

    name: str
    command: tuple[str, ...]
    missing: str = ""  # why it cannot run here, if it cannot
    listeners: int = 1  # processes that each print a port line once they listen

    @classmethod
    def custom(cls, text: str) -> ServerSpec:
        """``NAME=COMMAND`` from the command line; COMMAND prints its port at start."""
        name, sep, command = text.partition("=")
        if not sep or not name or not command.strip():
            raise ValueError(f"a server is NAME=COMMAND, got {text!r}")
        return cls(name, tuple(shlex.split(command)))


def catalog() -> list[ServerSpec]:
    """The servers the lab compares, in the order tables list them."""
    uvloop = "" if importlib.util.find_spec("uvloop") else "uvloop is not installed"
    return [
        ServerSpec("geventsrv", (PY, "-m", "geventsrv", "--port", "0")),
        ServerSpec(
            "geventsrv-2-workers",
            (PY, "-m", "geventsrv", "--port", "0", "--workers", "2"),
            listeners=2,
        ),
        ServerSpec(
            "gevent-streamserver", (PY, "-m", _SERVERS + "gevent_streamserver", "--port", "0")
        ),
        ServerSpec("threads", (PY, "-m", _SERVERS + "threads", "--port", "0")),
        ServerSpec("selectors", (PY, "-m", _SERVERS + "selectors_server", "--port", "0")),
        ServerSpec("asyncio-streams", (PY, "-m", _SERVERS + "asyncio_streams", "--port", "0")),
        ServerSpec("asyncio-protocol", (PY, "-m", _SERVERS + "asyncio_protocol", "--port", "0")),
        ServerSpec(
            "uvloop-protocol",
            (PY, "-m", _SERVERS + "asyncio_protocol", "--uvloop", "--port", "0"),
            uvloop,
        ),
    ]


_PORT_LINE = re.compile(r"listening on \[?[^\]\s]*\]?:(\d+)|^\s*(\d+)\s*$")


class RunningServer:
    """A server process, its port read from its first lines of output."""

    def __init__(self, spec: ServerSpec, start_timeout: float = 20.0) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            spec.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        self.output: list[str] = []
        found = threading.Event()
        listening = 0

        def read(stream: Any) -> None:
            nonlocal listening
            for line in stream:
                self.output.append(line)
                match = _PORT_LINE.search(line)
                if match and not found.is_set():
                    self.port = int(match.group(1) or match.group(2))
                    listening += 1
                    if listening >= spec.listeners:
                        found.set()

        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=read, args=(stream,), daemon=True).start()
        deadline = time.monotonic() + start_timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{spec.name} did not start: {''.join(self.output)[-500:]}")

    def cpu_seconds(self) -> float:
        """CPU time of the server and every process it started (workers), from /proc."""
        total = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident memory of the server and its workers, from /proc."""
        total = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from the parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def measure_storm(spec: ServerSpec, connections: int, size: int = 64) -> dict[str, Any]:
    """Open ``connections`` back to back (C generator), one echo each, then hold them idle.

    Reports how long connecting took, each connection's time from connect()
    to its first full echo, and the server's memory per idle connection.
    """
    server = RunningServer(spec)
    try:
        time.sleep(0.3)
        rss_before = server.rss_bytes()
        with cload.Storm(("127.0.0.1", server.port), connections, size) as storm:
            time.sleep(0.5)  # let every connection settle into its idle wait
            rss_held = server.rss_bytes()
            result = storm.result
        alive = server.proc.poll() is None
    finally:
        server.stop()
    return {
        "server": spec.name,
        "connections": connections,
        "ok": result.ok,
        "failed": result.failed,
        "connect_s": result.connect_seconds,
        "first_echo_p50_s": result.first_echo_p50,
        "first_echo_p99_s": result.first_echo_p99,
        "first_echo_max_s": result.first_echo_max,
        "idle_rss_per_connection_kib": (rss_held - rss_before) / max(result.ok, 1) / 1024,
        "first_error": result.first_error,
        "server_survived": alive,
    }


def client_processes(connections: int, requested: int | None, client: str = "python") -> int:
    """Load processes for a point: as requested, else one C process, or one Python
    process per 2,500 connections (at most the CPU count)."""
    if requested:
        return max(1, min(requested, connections))
    if client == "c":
        return 1
    return max(1, min(os.cpu_count() or 1, -(-connections // 2500)))


def measure(
    spec: ServerSpec,
    size: int,
    connections: int,
    duration: float,
    warmup: float,
    procs: int | None = None,
    client: str = "python",
) -> dict[str, Any]:
    """One server, one message size, one concurrency: every figure the lab reports."""
    server = RunningServer(spec)
    try:
        time.sleep(0.1)  # let it settle before the idle reading
        rss_idle = server.rss_bytes()
        workers = client_processes(connections, procs, client)
        shares = [connections // workers + (i < connections % workers) for i in range(workers)]
        address = ("127.0.0.1", server.port)
        if client == "c":
            loads: list[Any] = [
                cload.LoadProcess(address, share, size, seed) for seed, share in enumerate(shares)
            ]
        else:
            loads = [PythonLoad(address, share, size) for share in shares]
        connect_errors = sum(load.ready() for load in loads)
        window_start = time.monotonic() + warmup + 0.3
        window_end = window_start + duration
        for load in loads:
            load.run(window_start, window_end)
        time.sleep(max(0.0, window_start - time.monotonic()))
        cpu_start = server.cpu_seconds()
        time.sleep(max(0.0, window_end - time.monotonic()))
        cpu_end = server.cpu_seconds()
        rss_loaded = server.rss_bytes()
        results: list[WorkerResult] = [load.result() for load in loads]
        alive = server.proc.poll() is None
    finally:
        server.stop()
    histogram = Histogram()
    for result in results:
        histogram.merge(result.histogram)
    requests = sum(r.requests for r in results)
    client_cpu = sum(r.cpu_seconds for r in results)
    return {
        "server": spec.name,
        "size": size,
        "connections": connections,
        "duration": duration,
        "requests": requests,
        "requests_per_s": requests / duration,
        "mb_per_s": sum(r.bytes for r in results) / duration / 1e6,
        "p50_us": histogram.percentile(0.50),
        "p99_us": histogram.percentile(0.99),
        "p999_us": histogram.percentile(0.999),
        "server_cpu_us_per_request": (cpu_end - cpu_start) / requests * 1e6 if requests else None,
        "server_cpu_share": (cpu_end - cpu_start) / duration,
        "server_rss_mib": rss_loaded / 2**20,
        "rss_per_connection_kib": (rss_loaded - rss_idle) / connections / 1024,
        "client": client,
        "client_processes": len(results),
        "client_cpu_share": client_cpu / duration / len(results),
        "client_bound": client_cpu / duration / len(results) > 0.9,
        "errors": sum(r.errors for r in results) + connect_errors,
        "mismatches": sum(r.mismatches for r in results),
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "server_survived": alive,
    }


class PythonLoad:
    """A :func:`~geventsrv.bench.loadgen.run_worker` process behind the C generator's interface."""

    def __init__(self, address: tuple[str, int], connections: int, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=run_worker, args=(address, connections, size, theirs))
        self.process.start()

    def ready(self) -> int:
        return int(_expect(self.pipe, "ready", 120))

    def run(self, window_start: float, window_end: float) -> None:
        self.window_end = window_end
        self.pipe.send((window_start, window_end))

    def result(self) -> WorkerResult:
        result: WorkerResult = _expect(self.pipe, "done", self.window_end - time.monotonic() + 60)
        self.process.join(10)
        return result


def _expect(pipe: Any, tag: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"load worker sent no {tag!r} within {timeout:g} s")
    got, value = pipe.recv()
    if got != tag:
        raise RuntimeError(f"load worker sent {got!r}, expected {tag!r}")
    return value
