"""``python -m geventsrv.bench``: the IO-models lab.

Runs every server under test on the same closed-loop workload, round by round
(servers interleaved, their order rotated each round, so that a noisy machine
shifts all of them alike), and reports medians: a table in the terminal, JSON
and CSV of every number, and PNG charts. Exits 1 if any reply was wrong.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline, exitcodes
from geventsrv.bench import cload, lab, machine, syscalls
from geventsrv.bench.load import CLIENTS, choose_client

PROG = "python -m geventsrv.bench"
#: The lab's other commands, ``python -m geventsrv.bench NAME``: module and what it measures.
SUBCOMMANDS = {
    "http": ("httpbench", "the HTTP mode against uvicorn and gunicorn, driven by wrk"),
    "http3": ("h3bench", "the HTTP mode's HTTP/3 against hypercorn's, driven by libcurl"),
    "ws": ("wsbench", "the WebSocket echo against websockets and uvicorn"),
    "grpc": ("grpcbench", "the gRPC echo against grpcio's own servers"),
    "storm": ("stormbench", "a storm of busy connections, counted per connection"),
    "capacity": ("capacity", "open-loop latency against offered rate"),
    "tls": ("tlscost", "geventsrv's CPU per request with and without TLS"),
    "ops": ("opscost", "what metrics and the access log cost"),
    "hostile": ("hostile", "one address attacks, another times its echo"),
    "soak": ("soak", "the soak test: mixed load and faults, leak checks"),
    "cluster": ("clusterbench", "several hosts behind HAProxy: steady, rolling, failover"),
}
FULL = {"sizes": [1024, 10240, 102400], "connections": [1, 10, 100, 1000, 10000], "storm": 10000}
QUICK = {
    "sizes": [1024],
    "connections": [1, 10, 100],
    "duration": 0.5,
    "warmup": 0.2,
    "rounds": 1,
    "storm": 500,
}


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,10,100, got {text!r}")
    return values


#: What the lab needs beyond geventsrv itself: ``pip install 'geventsrv[bench]'``.
EXTRAS = ("rich", "matplotlib")


def missing_extras() -> list[str]:
    """The lab's libraries that cannot be imported here."""
    missing = []
    for name in EXTRAS:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
            found = False
        if not found:
            missing.append(name)
    return missing


def build_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<10} {summary}" for name, (_, summary) in SUBCOMMANDS.items())
    parser = cmdline.Parser(
        prog=PROG,
        usage=f"{PROG} [{{{','.join(SUBCOMMANDS)}}}] [options]",
        description=textwrap.fill(
            "The IO-models lab, with no command: run every server under test on the same "
            "closed-loop workload, round by round, interleaved, and report medians: a table, "
            "JSON, CSV and PNG charts. Exits 1 if any reply was wrong.",
            79,
        ),
        epilog=f"commands (each has its own --help):\n{commands}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = [spec.name for spec in lab.catalog()]
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 KiB messages at 1, 10, 100 connections, 0.5 s, 1 round",
    )
    parser.add_argument(
        "--servers",
        type=lambda t: t.split(","),
        help=f"comma-separated subset of: {', '.join(names)} (default: all)",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="also test this command (repeatable). It must listen on 127.0.0.1, echo every "
        "byte, and announce its port on stdout or stderr as a line holding only the port "
        "number (or geventsrv's 'listening on HOST:PORT'); SIGTERM must stop it. It runs in "
        "the current directory: another checkout of geventsrv runs from its own "
        "('env -C ../other python -m geventsrv --port 0'), as python -m looks there first",
    )
    parser.add_argument(
        "--sizes", type=_ints, help="message sizes in bytes (default: 1024,10240,102400)"
    )
    parser.add_argument(
        "--connections", type=_ints, help="concurrency levels (default: 1,10,100,1000,10000)"
    )
    parser.add_argument(
        "--duration", type=cmdline.positive_number, help="seconds measured per point (default: 2)"
    )
    parser.add_argument(
        "--warmup",
        type=cmdline.seconds,
        help="seconds of load before measuring (default: 0.5)",
    )
    parser.add_argument(
        "--rounds", type=cmdline.positive_int, help="rounds; medians are reported (default: 3)"
    )
    parser.add_argument(
        "--storm",
        type=cmdline.count,
        help="connections for the connection-storm measurement, 0 to skip; needs the C "
        "client (default: 10000; --quick: 500)",
    )
    parser.add_argument(
        "--client-processes",
        type=cmdline.count,
        default=0,
        help="load processes per point (default: 1 per 2,500 connections)",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="auto",
        help="load generator: the C one (built with the system compiler on first use) "
        "or the Python one; auto = C when it can be built (default: auto)",
    )
    parser.add_argument(
        "--unsettled",
        action="store_true",
        help="skip the warm-up connections before each measurement, to see what they change",
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="also count each server's system calls per request (needs perf and root)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="output directory")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    missing = missing_extras()
    if missing and not {"-h", "--help", "--version"} & set(argv):
        print(
            f"{PROG}: error: the lab needs {' and '.join(missing)}: "
            "python3 -m pip install 'geventsrv[bench]' (or: pip install rich matplotlib)",
            file=sys.stderr,
        )
        return exitcodes.USAGE
    from geventsrv.bench import report

    if argv[:1] and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(f"geventsrv.bench.{SUBCOMMANDS[argv[0]][0]}")
        code: int = module.main(argv[1:])
        return code
    parser = build_parser()
    args = parser.parse_args(argv)
    settings: dict[str, Any] = dict(FULL, duration=2.0, warmup=0.5, rounds=3)
    if args.quick:
        settings.update(QUICK)
    for name in ("sizes", "connections", "duration", "warmup", "rounds", "storm"):
        if getattr(args, name) is not None:  # explicit flags win over --quick
            settings[name] = getattr(args, name)
    catalog = {spec.name: spec for spec in lab.catalog()}
    wanted = args.servers or list(catalog)
    unknown = [name for name in wanted if name not in catalog]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r}; choose from {', '.join(catalog)}")
    try:
        extra = [lab.ServerSpec.custom(text) for text in args.server]
    except ValueError as exc:
        parser.error(str(exc))
    specs = [catalog[name] for name in wanted] + extra
    if args.syscalls and (why := syscalls.available()):
        parser.error(f"--syscalls: {why}")
    try:
        client = choose_client(args.client)
    except cload.BuildError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    for spec in specs:
        if spec.missing:
            console.print(f"[yellow]skipping {spec.name}: {spec.missing}[/]")
    specs = [spec for spec in specs if not spec.missing]
    points = [(size, conns) for size in settings["sizes"] for conns in settings["connections"]]
    runs: list[dict[str, Any]] = []
    storms: list[dict[str, Any]] = []
    failures: list[str] = []
    storm_size = settings["storm"] if client == "c" else 0
    if settings["storm"] and client != "c":
        console.print("[yellow]skipping the connection storm: it needs the C client[/]")
    started = time.monotonic()
    with Progress(console=console, transient=True) as progress:
        per_round = (len(points) + bool(storm_size)) * len(specs)
        task = progress.add_task("measuring", total=settings["rounds"] * per_round)
        for round_number in range(settings["rounds"]):
            if storm_size:
                shift = round_number % len(specs)
                for spec in specs[shift:] + specs[:shift]:
                    progress.update(
                        task, description=f"round {round_number + 1}: {spec.name} storm"
                    )
                    try:
                        storm = lab.measure_storm(spec, storm_size)
                    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                        failures.append(f"{spec.name} storm: {exc}")
                    else:
                        storm["round"] = round_number + 1
                        storms.append(storm)
                    progress.advance(task)
            for size, conns in points:
                shift = round_number % len(specs)
                for spec in specs[shift:] + specs[:shift]:  # interleaved, order rotated
                    progress.update(
                        task,
                        description=f"round {round_number + 1}: {spec.name} {size} B x {conns}",
                    )
                    try:
                        run = lab.measure(
                            spec,
                            size,
                            conns,
                            settings["duration"],
                            settings["warmup"],
                            args.client_processes or None,
                            client,
                            count_syscalls=args.syscalls,
                            settle=not args.unsettled,
                        )
                    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                        failures.append(f"{spec.name} {size} B x {conns}: {exc}")
                        progress.advance(task)
                        continue
                    run["round"] = round_number + 1
                    runs.append(run)
                    progress.advance(task)
    if not runs:
        console.print("[red]no measurement completed[/]")
        for failure in failures:
            console.print(f"  {failure}")
        return 1
    rows = report.medians(runs)
    # Wide enough for every column even when the output is a file or a pipe.
    output = Console(width=None if sys.stdout.isatty() else 160)
    output.print(report.table(rows, output.width))
    if storms:
        output.print(report.storm_table(report.storm_medians(storms)))
    meta = {
        "machine": machine.fingerprint(),
        "settings": settings,
        "client": client,
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures,
    }
    paths = report.write_files(args.out, meta, runs, rows, storms)
    if not args.no_charts:
        paths += report.charts(args.out, rows, storms)
    console.print("wrote " + ", ".join(str(path) for path in paths))
    bad = [row for row in rows if row["mismatches"]]
    for row in bad:
        console.print(
            f"[bold red]FAIL: {row['server']} returned wrong bytes "
            f"({row['mismatches']} mismatched replies at {row['size']} B x {row['connections']})[/]"
        )
    for failure in failures:
        console.print(f"[red]FAIL: {failure}[/]")
    return 1 if bad or failures else 0


if __name__ == "__main__":
    cmdline.run(main, PROG)
