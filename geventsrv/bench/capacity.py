"""``python -m geventsrv.bench capacity``: the highest rate a server sustains within a p99 target.

The lab's main table is closed-loop: each connection waits for its reply
before it sends again, so a slow server is offered less load and queueing
never shows. Here the C generator's open loop sends requests on a fixed
schedule and measures latency from the scheduled time (coordinated omission
corrected, as wrk2 does), and the command searches, per server, for the
highest offered rate whose p99 stays under the target (10 ms by default):
rates rise by half again until the target is missed, then the step between
the last rate that held and the first that did not is halved a few times.

Writes ``capacity.json``, ``capacity.csv`` and ``capacity.png`` (p99 and p50
against the offered rate, per server). Needs the C load generator.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline, exitcodes
from geventsrv.bench import cload, lab, machine

PROG = "python -m geventsrv.bench capacity"
#: First rate tried, requests/s over all connections.
START_RATE = 5000.0
#: Rates rise by this factor until the target is missed.
GROWTH = 1.5
#: Halvings of the step between the last rate that held and the first that failed.
REFINEMENTS = 3


def build_parser() -> cmdline.Parser:
    parser = cmdline.Parser(
        prog=PROG,
        description="Find the highest rate each server sustains with p99 latency under a "
        "target, offering requests on a schedule (open loop, coordinated omission corrected).",
    )
    names = [spec.name for spec in lab.catalog()]
    parser.add_argument(
        "--servers",
        type=lambda t: t.split(","),
        help=f"comma-separated subset of: {', '.join(names)} (default: all)",
    )
    parser.add_argument(
        "--connections", type=cmdline.positive_int, default=100, help="default: 100"
    )
    parser.add_argument(
        "--size", type=cmdline.positive_int, default=1024, help="message bytes (default: 1024)"
    )
    parser.add_argument(
        "--p99-ms", type=cmdline.positive_number, default=10.0, help="latency target (default: 10)"
    )
    parser.add_argument(
        "--duration",
        type=cmdline.positive_number,
        default=2.0,
        help="seconds per rate (default: 2)",
    )
    parser.add_argument(
        "--warmup", type=cmdline.seconds, default=0.5, help="seconds before each window"
    )
    parser.add_argument(
        "--max-rate", type=cmdline.positive_number, default=1e6, help="stop the search here"
    )
    parser.add_argument("--out", type=Path, default=Path("reports/capacity"))
    parser.add_argument("--no-charts", action="store_true")
    return parser


def offer(
    address: tuple[str, int],
    connections: int,
    size: int,
    rate: float,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    """One window of open-loop load at ``rate``: what was achieved and how long it took."""
    load = cload.OpenLoad(address, connections, size, seed=int(rate), rate=rate)
    connect_errors = load.ready()
    start = time.monotonic() + warmup + 0.2
    load.run(start, start + duration)
    result = load.result()
    histogram = result.histogram
    return {
        "offered_per_s": rate,
        "achieved_per_s": load.completed / duration,
        "p50_us": histogram.percentile(0.5),
        "p99_us": histogram.percentile(0.99),
        "p999_us": histogram.percentile(0.999),
        "max_wait_s": result.longest_wait,
        "scheduled": load.scheduled,
        "completed": load.completed,
        "late": load.late,
        "errors": result.errors + connect_errors,
        "mismatches": result.mismatches,
    }


def held(point: dict[str, Any], target_us: float) -> bool:
    """The server kept up: p99 within target, (almost) every scheduled request answered."""
    return (
        point["p99_us"] <= target_us
        and not point["late"]
        and not point["errors"]
        and not point["mismatches"]
        and point["completed"] >= 0.99 * point["scheduled"]
    )


def search(spec: lab.ServerSpec, args: Any) -> tuple[float, list[dict[str, Any]]]:
    """The highest rate that held for ``spec``, and every point tried (in order)."""
    target = args.p99_ms * 1000
    points: list[dict[str, Any]] = []
    server = lab.start_server(spec)
    try:
        lab.warm_up(server.address, args.size)

        def trial(rate: float) -> bool:
            point = offer(server.address, args.connections, args.size, rate, args.duration,
                          args.warmup)  # fmt: skip
            point["server"], point["held"] = spec.name, held(point, target)
            points.append(point)
            verdict = "held" if point["held"] else "missed"
            p99_ms = point["p99_us"] / 1000
            print(
                f"  {spec.name}: {rate:,.0f}/s -> p99 {p99_ms:,.1f} ms {verdict}", file=sys.stderr
            )
            return bool(point["held"])

        good, bad = 0.0, 0.0
        rate = START_RATE
        while rate <= args.max_rate:
            if not trial(rate):
                bad = rate
                break
            good, rate = rate, rate * GROWTH
        if bad:
            for _ in range(REFINEMENTS):
                middle = (good + bad) / 2
                if trial(middle):
                    good = middle
                else:
                    bad = middle
    finally:
        server.stop()
    return good, points


def chart(path: Path, points: list[dict[str, Any]], target_ms: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geventsrv.bench.report import HIGHLIGHT

    fig, ax = plt.subplots(figsize=(9, 5))
    servers = list(dict.fromkeys(point["server"] for point in points))
    for index, server in enumerate(servers):
        mine = sorted(
            (p for p in points if p["server"] == server), key=lambda p: p["offered_per_s"]
        )
        xs = [p["offered_per_s"] for p in mine]
        color = "black" if server == HIGHLIGHT else f"C{index}"
        width = 2.6 if server == HIGHLIGHT else 1.3
        ax.plot(xs, [p["p99_us"] / 1000 for p in mine], marker="o", color=color,
                linewidth=width, label=f"{server} p99")  # fmt: skip
        ax.plot(xs, [p["p50_us"] / 1000 for p in mine], linestyle=":", color=color,
                linewidth=1, label=f"{server} p50")  # fmt: skip
    ax.axhline(
        target_ms, color="red", linewidth=1, linestyle="--", label=f"target {target_ms:g} ms"
    )
    ax.set_yscale("log")
    ax.set_xlabel("offered requests/s (open loop, on a schedule)")
    ax.set_ylabel("latency from the scheduled send, ms (log)")
    ax.set_title("Latency against offered rate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    catalog = {spec.name: spec for spec in lab.catalog()}
    wanted = args.servers or [name for name, spec in catalog.items() if not spec.missing]
    unknown = [name for name in wanted if name not in catalog]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r}; choose from {', '.join(catalog)}")
    try:
        cload.build()
    except cload.BuildError as exc:
        print(f"{PROG}: error: the open loop needs the C load generator: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    results, points = [], []
    for name in wanted:
        best, tried = search(catalog[name], args)
        points += tried
        results.append({"server": name, "max_rate_per_s": best, "p99_target_ms": args.p99_ms})
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"highest rate with p99 <= {args.p99_ms:g} ms ({args.connections} connections, "
          f"{args.size} B):")  # fmt: skip
    for row in sorted(results, key=lambda row: -row["max_rate_per_s"]):
        print(f"  {row['server']:<22} {row['max_rate_per_s']:>10,.0f} requests/s")
    meta = {
        "machine": machine.fingerprint(),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "capacity.json").write_text(
        json.dumps({"meta": meta, "results": results, "points": points}, indent=2) + "\n"
    )
    with (args.out / "capacity.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(points[0]))
        writer.writeheader()
        writer.writerows(points)
    if not args.no_charts:
        chart(args.out / "capacity.png", points, args.p99_ms)
    bad = [p for p in points if p["mismatches"]]
    return 1 if bad else 0
