"""``python -m geventsrv.bench grpc``: the HTTP mode's gRPC echo against grpcio's own servers.

Two workloads, round by round, servers interleaved and their order rotated each
round, each after the same warm-up:

* ``unary``: h2load calling ``geventsrv.echo.v1.Echo/Unary`` with one 64-byte
  message, pre-framed (``content-type: application/grpc``, ``te: trailers``),
  ten calls in flight per connection: what a call costs the server;
* ``bidi``: grpcio's asyncio client keeping bidirectional streams on one
  channel, each sending a 64-byte message and waiting for its echo
  (:mod:`geventsrv.bench.servers.grpcapps`): messages per second on streams.

Peers: grpcio's thread-pool server and its asyncio server, serving the same
echo with a Python handler on grpcio's C core (messages as bytes, no protobuf
on either side), one process each. CPU per call (or message) is the server's
own, from ``/proc``, over the load window. Every server's echo is checked
before it is measured; h2load's errors and non-2xx answers make the run exit 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline
from geventsrv.bench import httpload, machine
from geventsrv.bench.httpbench import (
    PY,
    BenchError,
    HttpServer,
    Running,
    add_window_arguments,
    interleaved,
    publish,
    window,
)
from geventsrv.bench.httpbench import SERVERS as HTTP_SERVERS
from geventsrv.bench.servers.grpcapps import same

PROG = "python -m geventsrv.bench grpc"
APPS = "geventsrv.bench.servers.grpcapps"
METHOD = "/geventsrv.echo.v1.Echo/Unary"
WORKLOADS = ("unary", "bidi")
#: One EchoMessage of 64 bytes, framed as gRPC frames a message (flag, length).
MESSAGE = b"\x0a\x3e" + b"m" * 62
FRAMED = b"\0" + len(MESSAGE).to_bytes(4, "big") + MESSAGE

SERVERS = (
    HTTP_SERVERS[0],  # geventsrv, as the HTTP lab runs it
    HttpServer("grpcio-threads", (PY, "-m", APPS, "sync", "{port}"), ("grpc",)),
    HttpServer("grpcio-asyncio", (PY, "-m", APPS, "aio", "{port}"), ("grpc",)),
)


def check_echo(server: HttpServer, port: int) -> None:
    """The server echoes a call (grpcio's client), or :class:`BenchError`."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            call = channel.unary_unary(METHOD, request_serializer=same, response_deserializer=same)
            answer = call(MESSAGE, timeout=10)
        except grpc.RpcError as exc:
            raise BenchError(f"{server.name}: the echo failed: {exc.code()}") from None
    if answer != MESSAGE:
        raise BenchError(f"{server.name}: the echo came back changed")


def unary_load(port: int, connections: int, seconds: float, body: Path) -> dict[str, Any]:
    extra = ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    try:
        return httpload.run("h2c", port, METHOD, connections, seconds, extra)
    except httpload.LoadError as exc:
        raise BenchError(str(exc)) from None


def bidi_load(port: int, streams: int, seconds: float) -> dict[str, Any]:
    command = [PY, "-m", APPS, "load", str(port), str(seconds), str(streams)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise BenchError(f"the streaming load failed: {result.stderr.strip()[-300:]}")
    messages = json.loads(result.stdout)["messages"]
    return {"requests_per_s": messages / seconds, "requests": messages, "p99_ms": None,
            "errors": 0}  # fmt: skip


def measure(
    server: HttpServer, workload: str, connections: int, duration: float, warmup: float,
    body: Path,
) -> dict[str, Any]:  # fmt: skip
    """One server, one workload, one window, after the same warm-up for all."""

    def load(running: Running, seconds: float) -> dict[str, Any]:
        if workload == "unary":
            return unary_load(running.port, connections, seconds, body)
        return bidi_load(running.port, connections, seconds)

    with Running(server) as running:
        check_echo(server, running.port)
        if warmup:
            load(running, warmup)
        cpu_before = running.cpu()
        figures = load(running, duration)
        cpu = running.cpu() - cpu_before
    done = figures["requests"]
    return {
        "server": server.name, "workload": workload, "connections": connections, **figures,
        "cpu_us_per_request": cpu / done * 1e6 if done else None,
    }  # fmt: skip


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, server): medians over the rounds, errors summed, and
    geventsrv's rate against each."""
    rows = []
    for workload, name in dict.fromkeys((run["workload"], run["server"]) for run in runs):
        mine = [run for run in runs if (run["workload"], run["server"]) == (workload, name)]
        row: dict[str, Any] = {"workload": workload, "server": name, "rounds": len(mine)}
        for figure in ("requests_per_s", "cpu_us_per_request"):
            values = [run[figure] for run in mine if run[figure] is not None]
            row[figure] = statistics.median(values) if values else None
        row["errors"] = sum(run["errors"] for run in mine)
        rows.append(row)
    for row in rows:
        ours = next((r for r in rows if r["workload"] == row["workload"]
                     and r["server"] == "geventsrv"), None)  # fmt: skip
        row["geventsrv_vs_this"] = (
            ours["requests_per_s"] / row["requests_per_s"]
            if ours and row["requests_per_s"]
            else None
        )
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Machine: {machine.describe(meta['machine'])}.", f"Command: `{meta['command']}`.", ""]
    how = {
        "unary": f"**unary** (h2load -m{httpload.H2_STREAMS}, {meta['connections']} connections, "
        "one 64-byte message per call)",
        "bidi": f"**bidi** (grpcio's asyncio client, {meta['connections']} bidirectional streams "
        "on one channel, one 64-byte message in flight on each)",
    }
    unit = {"unary": "calls", "bidi": "messages"}
    for workload in dict.fromkeys(row["workload"] for row in rows):
        lines += [
            f"{how[workload]}, medians of {meta['rounds']} round(s):",
            "",
            f"| server | {unit[workload]}/s | CPU µs per {unit[workload][:-1]} "
            f"| geventsrv's {unit[workload]}/s vs it | errors |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in (r for r in rows if r["workload"] == workload):
            cpu = row["cpu_us_per_request"]
            ratio = row["geventsrv_vs_this"]
            lines.append(
                f"| {row['server']} | {row['requests_per_s']:,.0f} | "
                f"{'-' if cpu is None else f'{cpu:.1f}'} | "
                f"{'-' if ratio is None else f'{ratio:.2f}'}x | {row['errors']} |"
            )
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = cmdline.Parser(
        prog=PROG,
        description="The HTTP mode's gRPC echo against grpcio's thread-pool and asyncio servers: "
        "unary calls driven by h2load, bidirectional streams by grpcio's client, rounds "
        "interleaved; medians of calls (messages) per second and CPU per call. Exits 1 if an "
        "echo was wrong or the load saw errors.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per point, 1 round, 10 connections"
    )
    parser.add_argument(
        "--servers", type=lambda t: t.split(","),
        help=f"comma-separated subset of: {', '.join(s.name for s in SERVERS)} (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--workloads", type=lambda t: t.split(","),
        help=f"comma-separated subset of: {', '.join(WORKLOADS)} (default: both)",
    )  # fmt: skip
    add_window_arguments(
        parser, "h2load's connections, or the client's streams", 3, Path("reports/grpc")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    connections, duration, warmup, rounds = window(args, 3)
    workloads = args.workloads or list(WORKLOADS)
    names = {server.name for server in SERVERS}
    unknown = [w for w in workloads if w not in WORKLOADS] + [
        s for s in args.servers or () if s not in names
    ]  # fmt: skip
    if unknown:
        parser.error(f"unknown workload or server: {', '.join(unknown)}")
    try:
        httpload.tool("h2c")
    except httpload.LoadError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    servers = [server for server in SERVERS if not args.servers or server.name in args.servers]
    # grpcio is every run's: the peers serve with it, and every server's echo is checked by it.
    if importlib.util.find_spec("grpc") is None:
        print(f"{PROG}: grpcio is not installed (pip install 'geventsrv[bench]')", file=sys.stderr)
        return 2
    runs: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile(prefix="geventsrv-grpc-") as body:
        body.write(FRAMED)
        body.flush()
        try:
            runs = interleaved(
                rounds, servers, [(workload,) for workload in workloads],
                lambda server, workload: measure(server, workload, connections, duration,
                                                 warmup, Path(body.name)),
            )  # fmt: skip
        except BenchError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
    rows = medians(runs)
    meta = {
        "machine": machine.fingerprint(),
        "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
        "connections": connections, "duration": duration, "warmup": warmup, "rounds": rounds,
    }  # fmt: skip
    return publish(args.out / "grpc", meta, rows, runs, markdown(rows, meta))
