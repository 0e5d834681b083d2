"""``python -m geventsrv.bench storm``: a storm of busy connections, counted per connection.

The lab's C generator opens ``--connections`` connections back to back, as
fast as ``connect()`` goes, and each echoes ``--size``-byte messages in a
closed loop from the moment it is connected, for ``--seconds`` after the storm
began. So the server takes a storm of new connections while the ones it has
already taken keep it busy: a server that serves the busy ones first leaves
the newcomers in its accept queue, and a queue that overflows sends clients
back to retry their handshake a second later. For each connection the
generator records the wait from its ``connect()`` to its first echo; the
report gives, per server, the longest wait (median over rounds, and the
range), the median connection's wait, the connections never echoed, and
those not echoed within the storm's first second. Rounds interleave the
servers and rotate their order; every server gets the same warm-up.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline, service
from geventsrv.bench import cload, lab, machine

PROG = "python -m geventsrv.bench storm"
DEFAULT_SERVERS = "geventsrv,geventsrv-patched,gevent-streamserver,asyncio-protocol,selectors"


def medians(storms: list[dict[str, Any]], servers: Sequence[str]) -> list[dict[str, Any]]:
    """One row per server, in ``servers`` order: medians, ranges and worst counts over rounds."""
    rows = []
    for name in servers:
        runs = [storm for storm in storms if storm["server"] == name]
        if not runs:
            continue
        longest = [run["first_echo_max_s"] for run in runs]
        rows.append(
            {
                "server": name,
                "rounds": len(runs),
                "longest_first_echo_s": statistics.median(longest),
                "longest_first_echo_range_s": [min(longest), max(longest)],
                "median_first_echo_s": statistics.median(run["first_echo_p50_s"] for run in runs),
                "unserved_most": max(run["unserved"] for run in runs),
                "late_most": max(run["late"] for run in runs),
                "errors": sum(run["errors"] for run in runs),
                "mismatches": sum(run["mismatches"] for run in runs),
                "echoes_per_s": statistics.median(run["requests"] / run["seconds"] for run in runs),
            }
        )
    return rows


def table(rows: list[dict[str, Any]], connections: int, seconds: float) -> str:
    """The medians as a Markdown table."""
    lines = [
        f"Busy storm: {connections:,} connections opened back to back, each echoing in a "
        f"closed loop once connected, for {seconds:g} s.",
        "",
        "| server | longest wait for a first echo, s | median connection's wait, s | "
        "never echoed | not echoed in the first second | echoes/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        low, high = row["longest_first_echo_range_s"]
        lines.append(
            f"| {row['server']} | {row['longest_first_echo_s']:.2f} ({low:.2f}-{high:.2f}) | "
            f"{row['median_first_echo_s']:.2f} | {row['unserved_most']:,} | "
            f"{row['late_most']:,} | {row['echoes_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cmdline.Parser(
        prog=PROG,
        description="A storm of connections that each echo in a closed loop from the moment "
        "they connect, against each server, interleaved; counted per connection. Exits 1 if "
        "any reply was wrong.",
    )
    parser.add_argument(
        "--servers", default=DEFAULT_SERVERS, help="comma-separated lab servers (%(default)s)"
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="also a server of your own, started by COMMAND (as the lab's --server)",
    )
    parser.add_argument("--connections", type=cmdline.positive_int, default=10_000)
    parser.add_argument(
        "--seconds", type=cmdline.positive_number, default=2.0, help="storm length (2)"
    )
    parser.add_argument("--size", type=cmdline.positive_int, default=64, help="bytes (64)")
    parser.add_argument("--rounds", type=cmdline.positive_int, default=3, help="(3)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports/storm.json"), help="results, JSON (%(default)s)"
    )
    args = parser.parse_args(argv)
    catalog = {spec.name: spec for spec in lab.catalog()}
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in catalog]
    if unknown or not (names or args.server):
        parser.error(
            f"unknown server(s) {', '.join(unknown) or '(none)'}; known: {', '.join(catalog)}"
        )
    specs = [catalog[name] for name in names if not catalog[name].missing]
    for name in names:
        if catalog[name].missing:
            print(f"skipping {name}: {catalog[name].missing}", file=sys.stderr)
    try:
        specs += [lab.ServerSpec.custom(text) for text in args.server]
    except ValueError as exc:
        parser.error(str(exc))
    try:
        cload.build()
    except cload.BuildError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    # The generator holds every connection open at once (and inherits this limit).
    service.raise_open_file_limit(args.connections + 100)
    storms: list[dict[str, Any]] = []
    for round_number in range(args.rounds):
        shift = round_number % len(specs)
        for spec in specs[shift:] + specs[:shift]:
            storm = lab.measure_busy_storm(spec, args.connections, args.seconds, args.size)
            storm["round"] = round_number + 1
            storms.append(storm)
            print(
                f"round {round_number + 1}: {spec.name}: longest first-echo wait "
                f"{storm['first_echo_max_s']:.3f} s, {storm['unserved']} never echoed, "
                f"{storm['late']} not in the first second",
                file=sys.stderr,
                flush=True,
            )
    rows = medians(storms, [spec.name for spec in specs])
    print(table(rows, args.connections, args.seconds))
    record = {
        "command": f"{PROG} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine.fingerprint(),
        "settings": {
            "connections": args.connections,
            "seconds": args.seconds,
            "size": args.size,
            "rounds": args.rounds,
        },
        "medians": rows,
        "runs": storms,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(row["mismatches"] for row in rows) else 0
