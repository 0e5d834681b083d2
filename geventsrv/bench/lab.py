"""Run one server under one load and measure it: the lab's unit of work.

:func:`measure` starts the server in its own process on port 0, opens the
connections from :mod:`geventsrv.bench.loadgen` worker processes, lets the load
warm up, then measures a window: requests and latency from the workers, CPU
time and memory of the server process from ``/proc``. Then it stops the server.
Nothing here is monkey-patched.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from geventsrv.bench import cload, syscalls
from geventsrv.bench.load import LoadGenerator, start_load
from geventsrv.bench.loadgen import Histogram, WorkerResult
from geventsrv.procstats import process_tree
from geventsrv.testing.process import ServerProcess, connect, recv_exactly

PY = sys.executable
_SERVERS = "geventsrv.bench.servers."
#: Connections :func:`warm_up` opens and closes before every measurement.
WARM_UP_CONNECTIONS = 8
#: Most bytes a warm-up connection sends before reading them back.
WARM_UP_PIECE = 65536


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


#: geventsrv as the lab runs it: every load comes from one address (127.0.0.1),
#: so the per-client connection limit, which would refuse it past 1,000, is off.
GEVENTSRV_LAB = (PY, "-m", "geventsrv", "--port", "0", "--max-conns-per-client", "0")


def catalog() -> list[ServerSpec]:
    """The servers the lab compares, in the order tables list them."""
    uvloop = "" if importlib.util.find_spec("uvloop") else "uvloop is not installed"
    return [
        ServerSpec("geventsrv", (*GEVENTSRV_LAB,)),
        ServerSpec("geventsrv-patched", (*GEVENTSRV_LAB, "--io", "patched")),
        ServerSpec("geventsrv-2-workers", (*GEVENTSRV_LAB, "--workers", "2"), listeners=2),
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


def start_server(spec: ServerSpec) -> ServerProcess:
    """Run ``spec``'s command until it has announced its port(s)."""
    return ServerProcess(command=spec.command, listeners=spec.listeners).wait_listening()


def warm_up(address: tuple[str, int], size: int, connections: int = WARM_UP_CONNECTIONS) -> None:
    """Open, use and close ``connections`` connections, one after another, before measuring.

    A server that has served and closed connections has settled as any real
    server has within seconds of going live: allocators have grown their
    pools, and glibc malloc has raised its dynamic mmap threshold past the
    largest block freed. Measured without this, a server that reads in large
    blocks (asyncio reads 256 KiB at a time) paid an mmap/munmap pair per
    request, over 3x its settled CPU per request. Every server gets the same.
    """
    message = bytes(range(256)) * (size // 256 + 1)
    for _ in range(connections):
        with connect(address) as sock:
            for start in range(0, size, WARM_UP_PIECE):
                piece = message[start : min(size, start + WARM_UP_PIECE)]
                sock.sendall(piece)
                try:
                    recv_exactly(sock, len(piece))
                except EOFError as exc:
                    raise RuntimeError(f"the server closed a warm-up connection: {exc}") from None


@contextmanager
def settled_server(spec: ServerSpec, size: int) -> Iterator[ServerProcess]:
    """``spec`` running, warmed up (:func:`warm_up`) and settled; stopped on the way out."""
    server = start_server(spec)
    try:
        warm_up(server.address, size)
        time.sleep(0.3)
        yield server
    finally:
        server.stop()


def measure_storm(spec: ServerSpec, connections: int, size: int = 64) -> dict[str, Any]:
    """Open ``connections`` back to back (C generator), one echo each, then hold them idle.

    Reports how long connecting took, each connection's time from connect()
    to its first full echo, and the server's memory per idle connection.
    """
    with settled_server(spec, size) as server:
        rss_before = server.rss_bytes()
        with cload.Storm(server.address, connections, size) as storm:
            time.sleep(0.5)  # let every connection settle into its idle wait
            rss_held = server.rss_bytes()
            result = storm.result
        alive = server.proc.poll() is None
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


def measure_busy_storm(
    spec: ServerSpec, connections: int, seconds: float = 2.0, size: int = 64
) -> dict[str, Any]:
    """Open ``connections`` back to back, each echoing in a closed loop once connected.

    Counted per connection: the wait from its ``connect()`` to its first echo,
    those never echoed, those not echoed within the storm's first second.
    """
    with settled_server(spec, size) as server:
        result = cload.busy_storm(server.address, connections, size, seconds)
        alive = server.proc.poll() is None
    return {
        "server": spec.name,
        "connections": connections,
        "seconds": seconds,
        "served": result.served,
        "unserved": result.unserved,
        "late": result.late,
        "errors": result.errors,
        "mismatches": result.mismatches,
        "connect_s": result.connect_seconds,
        "first_echo_p50_s": result.first_echo_p50,
        "first_echo_p99_s": result.first_echo_p99,
        "first_echo_max_s": result.first_echo_max,
        "requests": result.requests,
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
    count_syscalls: bool = False,
    settle: bool = True,
) -> dict[str, Any]:
    """One server, one message size, one concurrency: every figure the lab reports.

    ``count_syscalls`` counts the server's system calls over the window
    (:mod:`geventsrv.bench.syscalls`); ``settle=False`` skips the warm-up, to
    show what it changes.
    """
    server = start_server(spec)
    try:
        if settle:
            warm_up(server.address, size)
        time.sleep(0.1)  # let it settle before the idle reading
        rss_idle = server.rss_bytes()
        workers = client_processes(connections, procs, client)
        shares = [connections // workers + (i < connections % workers) for i in range(workers)]
        loads: list[LoadGenerator] = [
            start_load(client, server.address, share, size, seed)
            for seed, share in enumerate(shares)
        ]
        connect_errors = sum(load.ready() for load in loads)
        window_start = time.monotonic() + warmup + 0.3
        window_end = window_start + duration
        for load in loads:
            load.run(window_start, window_end)
        time.sleep(max(0.0, window_start - time.monotonic()))
        cpu_start = server.cpu_seconds()
        calls: dict[str, int] = {}
        if count_syscalls:
            pids = process_tree(server.pid)
            calls = syscalls.count(pids, max(0.1, window_end - time.monotonic() - 0.05))
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
        "syscalls_per_request": calls.get("total", 0) / requests if calls and requests else None,
        "syscalls": {name: round(n / requests, 3) for name, n in calls.items() if n}
        if requests
        else {},
        "settled": settle,
        "unserved": sum(r.unserved for r in results),
        "longest_wait_s": max(r.longest_wait for r in results),
        "fewest_per_connection": min(r.fewest_per_connection for r in results),
        "errors": sum(r.errors for r in results) + connect_errors,
        "mismatches": sum(r.mismatches for r in results),
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "server_survived": alive,
    }
