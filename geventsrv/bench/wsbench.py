"""``python -m geventsrv.bench ws``: the WebSocket echo against the ``websockets`` library's
server and uvicorn, with a load that frames and masks as a client must.

The lab's C generator in its ``ws`` mode opens the connections, upgrades each,
then runs the closed loop: one masked binary frame of ``--size`` bytes per
message, the echo checked byte for byte. Rounds interleave the servers and
rotate their order; each gets the same warm-up. CPU per message is the
server's own process tree, from ``/proc``. Then ``--idle`` connections are
opened, upgraded and left idle on each server, and the growth of its resident
memory per connection is reported beside the figures.

Peers (``geventsrv/bench/servers/wsapps.py``): the ``websockets`` server
(asyncio on uvloop), and uvicorn (httptools, uvloop) with its ``websockets``
implementation. Rankings depend on the machine; the report names it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline
from geventsrv.bench import cload, machine
from geventsrv.bench.httpbench import PY, BenchError, HttpServer, Running
from geventsrv.procstats import process_tree, rss_bytes

PROG = "python -m geventsrv.bench ws"
APPS = "geventsrv.bench.servers.wsapps"
SERVERS = (
    HttpServer("geventsrv", (PY, "-m", "geventsrv", "--mode", "http", "--port", "{port}",
                             "--max-conns", "30000", "--log-level", "warning")),
    HttpServer("websockets", (PY, "-m", APPS, "--port", "{port}"), ("websockets", "uvloop")),
    HttpServer("uvicorn-websockets",
               (PY, "-m", "uvicorn", "--port", "{port}", "--ws", "websockets", "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--log-level", "error",
                "--ws-max-size", str(1 << 24), f"{APPS}:asgi"),
               ("uvicorn", "websockets", "uvloop")),
)  # fmt: skip
QUICK: dict[str, Any] = {"duration": 1.0, "warmup": 0.5, "rounds": 1, "idle": 500}


def load_window(port: int, connections: int, size: int, duration: float) -> Any:
    """One closed-loop window of the C generator over WebSocket; its result."""
    load = cload.WebSocketLoad(("127.0.0.1", port), connections, size, seed=int(time.time()))
    refused = load.ready()
    start = time.monotonic() + 0.3
    load.run(start, start + duration)
    result = load.result()
    if refused:
        raise BenchError(f"{refused} WebSocket upgrade(s) failed: {result.first_error}")
    return result


def measure(server: HttpServer, size: int, connections: int, duration: float, warmup: float
            ) -> dict[str, Any]:  # fmt: skip
    with Running(server) as running:
        if warmup:
            load_window(running.port, connections, size, warmup)
        before = running.cpu()
        result = load_window(running.port, connections, size, duration)
        cpu = running.cpu() - before
    messages = result.requests
    return {
        "server": server.name, "size": size, "connections": connections,
        "messages_per_s": messages / duration, "messages": messages,
        "cpu_us_per_message": cpu / messages * 1e6 if messages else None,
        "p99_ms": result.histogram.percentile(0.99) / 1000 if messages else None,
        "errors": result.errors + result.mismatches, "first_error": result.first_error,
    }  # fmt: skip


def idle_memory(server: HttpServer, count: int) -> dict[str, Any]:
    """Resident memory added per idle, upgraded WebSocket (the server's process tree)."""
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET /idle HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with Running(server) as running:
        sockets = []
        try:
            for _ in range(8):  # the first upgrades load what every connection shares
                sockets.append(_upgraded(running.port, request))
            time.sleep(0.5)
            before = sum(rss_bytes(pid) for pid in process_tree(running.process.pid))
            for _ in range(count):
                sockets.append(_upgraded(running.port, request))
            time.sleep(1.0)
            after = sum(rss_bytes(pid) for pid in process_tree(running.process.pid))
        finally:
            for sock in sockets:
                sock.close()
    return {
        "server": server.name,
        "idle": count,
        "kib_per_connection": (after - before) / count / 1024,
    }


def _upgraded(port: int, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            raise BenchError("the server closed an idle connection's upgrade")
        head += data
    if not head.startswith(b"HTTP/1.1 101"):
        raise BenchError(f"an idle connection's upgrade was answered {head[:40]!r}")
    return sock


def build_parser() -> Any:
    parser = cmdline.Parser(
        prog=PROG,
        description="The WebSocket echo against the websockets library's server and uvicorn: "
        "1 KiB messages/s and CPU per message under the C generator's ws mode (masked frames, "
        "every echo checked), rounds interleaved; then memory per idle WebSocket. Exits 1 on "
        "any wrong echo.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per point, 1 round, 500 idle WebSockets"
    )
    parser.add_argument("--servers", type=lambda t: t.split(","),
                        help=f"comma-separated subset of: {', '.join(s.name for s in SERVERS)} "
                        "(default: all that are installed)")  # fmt: skip
    parser.add_argument("--size", type=cmdline.positive_int, default=1024,
                        help="bytes per message (default: %(default)s)")  # fmt: skip
    parser.add_argument("--connections", type=cmdline.positive_int, default=100,
                        help="WebSockets in the closed loop (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--duration", type=cmdline.positive_number, help="seconds measured per point (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=cmdline.seconds, help="seconds of the same load before (default: 2)"
    )
    parser.add_argument(
        "--rounds", type=cmdline.positive_int, help="rounds; medians are reported (default: 5)"
    )
    parser.add_argument(
        "--idle", type=cmdline.count,
        help="idle WebSockets held to measure memory per WebSocket, 0 to skip (default: 10000)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("reports/ws"),
                        help="output directory (default: %(default)s)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    preset: dict[str, Any] = QUICK if args.quick else {}
    duration = args.duration or preset.get("duration", 5.0)
    warmup = args.warmup if args.warmup is not None else preset.get("warmup", 2.0)
    rounds = args.rounds or preset.get("rounds", 5)
    idle = args.idle if args.idle is not None else preset.get("idle", 10000)
    unknown = [s for s in args.servers or () if s not in {server.name for server in SERVERS}]
    if unknown:
        parser.error(f"unknown server: {', '.join(unknown)}")
    servers = []
    for server in SERVERS:
        if args.servers and server.name not in args.servers:
            continue
        if why := server.missing():
            print(f"skipping {server.name}: {why} (pip install 'geventsrv[bench]' websockets)")
            continue
        servers.append(server)
    runs: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    try:
        cload.build()
        for number in range(rounds):
            shift = number % len(servers)
            for server in servers[shift:] + servers[:shift]:
                run = measure(server, args.size, args.connections, duration, warmup)
                run["round"] = number + 1
                runs.append(run)
                cpu = run["cpu_us_per_message"] or 0
                print(f"round {number + 1}/{rounds} {server.name:20} "
                      f"{run['messages_per_s']:>9,.0f} messages/s {cpu:>6.1f} µs CPU/message",
                      flush=True)  # fmt: skip
        if idle:
            for server in servers:
                memory.append(idle_memory(server, idle))
                print(f"{server.name:20} {memory[-1]['kib_per_connection']:.1f} KiB per idle "
                      f"WebSocket ({idle:,} held)", flush=True)  # fmt: skip
    except (BenchError, cload.BuildError, RuntimeError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    rows = []
    for server in servers:
        mine = [run for run in runs if run["server"] == server.name]
        rows.append({
            "server": server.name,
            "messages_per_s": statistics.median(r["messages_per_s"] for r in mine),
            "cpu_us_per_message": statistics.median(r["cpu_us_per_message"] or 0 for r in mine),
            "p99_ms": statistics.median(r["p99_ms"] or 0 for r in mine),
            "errors": sum(r["errors"] for r in mine),
            "kib_per_idle_connection": next(
                (m["kib_per_connection"] for m in memory if m["server"] == server.name), None
            ),
        })  # fmt: skip
    meta = {
        "machine": machine.fingerprint(), "size": args.size, "connections": args.connections,
        "duration": duration, "warmup": warmup, "rounds": rounds, "idle": idle,
        "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
        "load": "the lab's C generator, ws mode (masked binary frames, echoes checked)",
    }  # fmt: skip
    lines = [f"Machine: {machine.describe(meta['machine'])}.", f"Command: `{meta['command']}`.",
             "",
             "| server | messages/s | CPU µs per message | p99 ms | KiB per idle WebSocket "
             "| errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in rows:
        kib = row["kib_per_idle_connection"]
        lines.append(
            f"| {row['server']} | {row['messages_per_s']:,.0f} | {row['cpu_us_per_message']:.1f} "
            f"| {row['p99_ms']:.2f} | {'-' if kib is None else f'{kib:.1f}'} | {row['errors']} |"
        )
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ws.json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs,
                                                  "memory": memory}, indent=1))  # fmt: skip
    (args.out / "ws.md").write_text(report)
    print()
    print(report)
    print(f"wrote {args.out / 'ws.json'} and {args.out / 'ws.md'}")
    return 1 if any(row["errors"] for row in rows) else 0
