"""``python -m geventsrv.bench ops``: what metrics and the access log cost geventsrv.

Three variants of the same server, measured round by round, interleaved:
``plain``; ``metrics`` (``--metrics``, scraped every second during the window,
four times as often as Prometheus's usual 15 s interval would, with the
text parsed as Prometheus would); ``access-log`` (``--access-log``, its lines
read by the harness as a log shipper would). Two workloads, because the two
features cost in different places:

* **persistent**: the lab's closed loop, 1 KiB over 100 connections (the C
  load generator where it builds): metrics could cost per request here; the
  access log writes nothing until a connection closes;
* **churn**: one connection per request (connect, 1 KiB echoed, close), from
  one client process: the access log writes a line per connection here.

The figure is geventsrv's own CPU per request (its process alone); requests/s
are shown beside it. Medians of the rounds, and each variant over ``plain``.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline
from geventsrv.bench import machine
from geventsrv.bench.lab import GEVENTSRV_LAB, ServerSpec, start_server, warm_up
from geventsrv.testing.process import connect, recv_exactly

VARIANTS = {
    "plain": (),
    "metrics": ("--metrics", "127.0.0.1:0"),
    "access-log": ("--access-log",),
}
SIZE = 1024


def spec(variant: str) -> ServerSpec:
    command = (*GEVENTSRV_LAB, *VARIANTS[variant])
    return ServerSpec(f"geventsrv {variant}", command)


class Scraper:
    """Fetches ``/metrics`` every ``interval`` seconds in a thread until stopped."""

    def __init__(self, url: str | None, interval: float = 1.0) -> None:
        self.url = url
        self.interval = interval
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self.url:
            self._thread.join(5)

    def _run(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        assert self.url is not None
        while not self._stop.wait(self.interval):
            with urllib.request.urlopen(self.url, timeout=5) as reply:
                list(text_string_to_metric_families(reply.read().decode()))
            self.scrapes += 1


def metrics_url(server: Any) -> str | None:
    for line in server.lines:
        if "metrics on http://" in line:
            return str(line.split("metrics on ", 1)[1].strip())
    return None


def persistent(variant: str, connections: int, duration: float) -> dict[str, Any]:
    """The lab's closed loop, the same way for every variant; scraped when metrics are on."""
    from geventsrv.bench.load import choose_client, start_load

    server = start_server(spec(variant))
    try:
        warm_up(server.address, SIZE)
        load = start_load(choose_client("auto"), server.address, connections, SIZE)
        load.ready()
        start = time.monotonic() + 0.8
        load.run(start, start + duration)
        with Scraper(metrics_url(server)):
            time.sleep(max(0.0, start - time.monotonic()))
            cpu = server.cpu_seconds()
            time.sleep(max(0.0, start + duration - time.monotonic()))
            cpu = server.cpu_seconds() - cpu
        requests = load.result().requests
    finally:
        server.stop()
    return {"requests_per_s": requests / duration, "cpu_us": cpu / requests * 1e6}


def _churn_client(address: tuple[str, int], until: float, counts: Any) -> None:
    payload = bytes(range(256)) * (SIZE // 256)
    done = 0
    while time.monotonic() < until:
        with connect(address) as sock:
            sock.sendall(payload)
            recv_exactly(sock, SIZE)
        done += 1
    counts.put(done)


def churn(variant: str, duration: float) -> dict[str, Any]:
    """One connection per request from one client process."""
    server = start_server(spec(variant))
    try:
        warm_up(server.address, SIZE)
        counts: Any = multiprocessing.get_context("spawn").Queue()
        with Scraper(metrics_url(server)):
            cpu = server.cpu_seconds()
            until = time.monotonic() + duration
            client = multiprocessing.get_context("spawn").Process(
                target=_churn_client, args=(server.address, until + 0.5, counts)
            )
            started = time.monotonic()
            client.start()
            done = counts.get(timeout=duration + 60)
            elapsed = time.monotonic() - started
            client.join(10)
            cpu = server.cpu_seconds() - cpu
    finally:
        server.stop()
    return {"requests_per_s": done / elapsed, "cpu_us": cpu / done * 1e6}


def main(argv: Sequence[str] | None = None) -> int:
    parser = cmdline.Parser(
        prog="python -m geventsrv.bench ops",
        description="geventsrv's CPU per request with metrics on and with the access log.",
    )
    parser.add_argument("--connections", type=cmdline.positive_int, default=100, help="(100)")
    parser.add_argument(
        "--duration", type=cmdline.positive_number, default=5.0, help="seconds per window (5)"
    )
    parser.add_argument("--rounds", type=cmdline.positive_int, default=5, help="(5)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports/ops.json"), help="runs and medians (%(default)s)"
    )
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    names = list(VARIANTS)
    for number in range(args.rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for variant in order:
            for workload in ("persistent", "churn"):
                if workload == "persistent":
                    figures = persistent(variant, args.connections, args.duration)
                else:
                    figures = churn(variant, args.duration)
                runs.append({"variant": variant, "workload": workload, **figures})
                print(
                    f"round {number + 1} {variant:10} {workload:10} "
                    f"{figures['requests_per_s']:9.0f} req/s  {figures['cpu_us']:6.1f} us/request",
                    flush=True,
                )
    medians: dict[str, dict[str, float]] = {}
    for workload in ("persistent", "churn"):
        for variant in names:
            rows = [r for r in runs if r["variant"] == variant and r["workload"] == workload]
            medians[f"{workload} {variant}"] = {
                key: statistics.median(r[key] for r in rows) for key in ("requests_per_s", "cpu_us")
            }
        base = medians[f"{workload} plain"]["cpu_us"]
        for variant in names:
            medians[f"{workload} {variant}"]["cpu_vs_plain"] = (
                medians[f"{workload} {variant}"]["cpu_us"] / base
            )
    for name, figures in medians.items():
        print(
            f"median {name:22} {figures['requests_per_s']:9.0f} req/s  "
            f"{figures['cpu_us']:6.1f} us/request  {figures['cpu_vs_plain']:.3f}x plain"
        )
    record = {"machine": machine.fingerprint(), "settings": vars(args) | {"out": str(args.out)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record | {"runs": runs, "medians": medians}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
