"""``python -m geventsrv.bench cluster``: several geventsrv hosts behind HAProxy, under locust.

Brings up B hosts (network namespaces on a bridge where this process may
create them, loopback addresses otherwise), HAProxy in front, and distributed
locust, then runs the scenarios:

* **steady**: each host's share of requests (from the info line of every
  connection) and of connections (from each host's /metrics), and what the
  balancer costs per request (the same load through HAProxy and straight to
  one host, interleaved rounds);
* **rolling**: each host in turn gets SIGTERM, drains, is started again;
* **failover**: one host is SIGKILLed mid-load and started again later.

Prints a verdict per target and exits 1 when any target was missed, 0 when
all held, 2 on bad arguments or a missing tool, 3 when the cluster could not
be set up or run (nothing to judge), 130 on Ctrl-C. Writes JSON, a CSV timeline
and a chart. Everything it made is removed on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from geventsrv import cmdline, exitcodes
from geventsrv.bench import cluster, hosts, machine
from geventsrv.bench.haproxy import HAProxyError

PROG = "python -m geventsrv.bench cluster"
SCENARIOS = ("steady", "rolling", "failover")
QUICK = {
    "steady": 5.0,
    "cost_rounds": 1,
    "cost_duration": 2.0,
    "warm": 2.0,
    "settle": 2.0,
    "down_for": 3.0,
}


def _scenarios(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(SCENARIOS)} (comma-separated), got {text!r}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = cmdline.Parser(
        prog=PROG,
        description="Several geventsrv hosts behind HAProxy, driven by distributed locust: "
        "steady share, rolling restart, failover. Exits 1 if a target is missed.",
    )
    add = parser.add_argument
    add("--scenarios", type=_scenarios, default=list(SCENARIOS), help="(steady,rolling,failover)")
    add("--quick", action="store_true", help="seconds per scenario instead of tens")
    add("--hosts", type=cmdline.positive_int, default=3, help="backend hosts (3)")
    add(
        "--workers",
        type=cmdline.positive_int,
        default=2,
        help="geventsrv --workers on each host (2)",
    )
    add(
        "--network",
        choices=("auto", "netns", "loopback"),
        default="auto",
        help="hosts as network namespaces (needs root and iproute2) or as 127.0.1.N; "
        "auto: namespaces where possible (auto)",
    )
    add("--balance", choices=("leastconn", "roundrobin"), default="leastconn", help="(leastconn)")
    add(
        "--load",
        choices=("locust", "c"),
        default="locust",
        help="locust: distributed locust, users that verify every byte and name the host "
        "that served them (every scenario); c: the lab's C load generator for raw rate "
        "(steady only, hosts in echo mode, shares from /metrics) (locust)",
    )
    add(
        "--connections",
        type=cmdline.positive_int,
        default=100,
        help="with --load c: connections (100)",
    )
    add(
        "--users",
        type=cmdline.positive_int,
        default=30,
        help="locust users, each one connection at a time (30)",
    )
    add("--load-workers", type=cmdline.count, default=2, help="locust worker processes (2)")
    add("--size", type=cmdline.positive_int, default=1024, help="bytes per echo (1024)")
    add(
        "--requests-per-connection",
        type=cmdline.positive_int,
        default=50,
        help="echoes before a user closes and reconnects (50)",
    )
    add("--steady", type=cmdline.positive_number, default=20.0, help="seconds of steady load (20)")
    add(
        "--cost-rounds",
        type=cmdline.count,
        default=3,
        help="balancer vs direct pairs, 0 to skip (3)",
    )
    add(
        "--cost-duration",
        type=cmdline.positive_number,
        default=5.0,
        help="seconds per cost window (5)",
    )
    add(
        "--warm",
        type=cmdline.seconds,
        default=3.0,
        help="seconds of load before the first event (3)",
    )
    add(
        "--settle",
        type=cmdline.seconds,
        default=3.0,
        help="seconds of load after each restart (3)",
    )
    add(
        "--down-for",
        type=cmdline.seconds,
        default=5.0,
        help="seconds a killed host stays down (5)",
    )
    add(
        "--shutdown-delay",
        type=cmdline.seconds,
        default=2.0,
        help="geventsrv --shutdown-delay (2)",
    )
    add(
        "--drain-timeout",
        type=cmdline.seconds,
        default=10.0,
        help="geventsrv --drain-timeout (10)",
    )
    add(
        "--check-interval",
        type=cmdline.positive_number,
        default=0.5,
        help="HAProxy's check inter, seconds (0.5)",
    )
    add(
        "--fall",
        type=cmdline.positive_int,
        default=2,
        help="failed checks before HAProxy marks a host down (2)",
    )
    add(
        "--rise",
        type=cmdline.positive_int,
        default=2,
        help="passed checks before it is up again (2)",
    )
    add("--out", type=Path, default=Path("reports/cluster"), help="output directory")
    add("--no-charts", action="store_true", help="skip the PNG chart")
    return parser


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> cluster.Settings:
    if args.load == "c" and args.scenarios != ["steady"]:
        parser.error("--load c runs the steady scenario only: --scenarios steady")
    if args.hosts < 2 and "failover" in args.scenarios:
        parser.error("--hosts: failover needs at least 2 hosts")
    settings = cluster.Settings(
        hosts=args.hosts,
        workers=args.workers,
        network=args.network,
        balance=args.balance,
        users=args.users,
        load_workers=args.load_workers,
        size=args.size,
        requests_per_connection=args.requests_per_connection,
        shutdown_delay=args.shutdown_delay,
        drain_timeout=args.drain_timeout,
        check_interval=args.check_interval,
        fall=args.fall,
        rise=args.rise,
        mode="echo" if args.load == "c" else "info",
    )
    # A host must stay accepting until HAProxy has seen it go unready, or
    # connections sent to it meanwhile are refused.
    needed = settings.detection + settings.check_interval
    if settings.shutdown_delay < needed:
        parser.error(
            f"--shutdown-delay must be at least check interval x (fall + 1) = {needed:g} s, "
            "so that HAProxy stops sending before a host stops accepting"
        )
    return settings


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_scenarios(
    args: argparse.Namespace, settings: cluster.Settings, scratch: Path
) -> tuple[dict[str, dict[str, Any]], list[Any], dict[str, str], str]:
    from geventsrv.bench import clusterreport as report

    results: dict[str, dict[str, Any]] = {}
    verdicts: list[report.Verdict] = []
    with cluster.Cluster(settings, scratch, say) as lab:
        labels = lab.labels
        say(f"{settings.hosts} hosts ({lab.network.kind}: {', '.join(labels)}) behind HAProxy")
        if args.load == "c":
            say(f"steady, C load generator: {args.connections} connections, {args.steady:g} s")
            results["steady"] = cluster.raw_rate(lab, args.steady, args.connections)
            verdicts += report.judge_raw(results["steady"], settings.hosts)
        elif "steady" in args.scenarios:
            say(f"steady: {args.steady:g} s")
            results["steady"] = cluster.steady(lab, args.steady)
            verdicts += report.judge_steady(results["steady"], settings.hosts)
            if args.cost_rounds:
                say(f"balancer cost: {args.cost_rounds} x 2 windows of {args.cost_duration:g} s")
                results["cost"] = cluster.balancer_cost(lab, args.cost_rounds, args.cost_duration)
                verdicts += report.judge_cost(results["cost"])
        if "rolling" in args.scenarios:
            say("rolling restart of every host")
            results["rolling"] = cluster.rolling(lab, args.warm, args.settle)
            verdicts += report.judge_rolling(results["rolling"], settings)
        if "failover" in args.scenarios:
            say(f"failover: {lab.hosts[-1].name} killed, back after {args.down_for:g} s")
            results["failover"] = cluster.failover(lab, args.warm, args.down_for, args.settle)
            verdicts += report.judge_failover(results["failover"], settings)
        kind = lab.network.kind
    return results, verdicts, labels, kind


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if parser.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    settings = settings_from(args, parser)
    if args.load == "locust" and (why := cluster.python_can_run_locust()):
        parser.error(why)
    if args.load == "c":
        from geventsrv.bench import cload

        try:
            cload.build()
        except cload.BuildError as exc:
            parser.error(f"--load c: {exc}")
    if args.network == "netns" and (why := hosts.namespaces_unavailable()):
        parser.error(f"--network netns: {why}")
    from geventsrv.bench import clusterreport as report

    args.out.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # cleanup runs on SIGTERM too
    started = time.monotonic()
    try:
        results, verdicts, labels, kind = run_scenarios(args, settings, args.out)
    except KeyboardInterrupt:
        say("interrupted; everything started was stopped and removed")
        return exitcodes.INTERRUPTED
    except (HAProxyError, hosts.NetworkError, RuntimeError) as exc:
        print(f"{PROG}: error: the cluster could not run: {exc}", file=sys.stderr)
        return exitcodes.SETUP_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    meta = {
        "machine": machine.fingerprint(),
        "network": kind,
        "settings": vars(settings),
        "scenarios": args.scenarios,
        "seconds": round(time.monotonic() - started, 1),
    }
    paths = report.write_files(args.out, meta, results, verdicts, labels)
    if not args.no_charts and args.load == "locust":
        paths.append(report.chart(args.out, results, labels))
    print(f"machine: {machine.describe(meta['machine'])}")
    for verdict in verdicts:
        mark = "PASS" if verdict.held else "FAIL"
        print(f"{mark} {verdict.scenario:8} {verdict.target}\n              {verdict.measured}")
    say("wrote " + ", ".join(str(path) for path in paths))
    return exitcodes.OK if all(v.held for v in verdicts) else exitcodes.INTERNAL_ERROR


if __name__ == "__main__":
    cmdline.run(main, PROG)
