"""``python -m geventsrv.top URL``: a live view of a running server, read from its /metrics.

Every second it fetches the server's metrics (``--metrics HOST:PORT``), parses
them with prometheus_client's own parser and shows, per worker when there are
several: connections open, accepts and bytes per second, why connections
closed, and the event loop's health (lag, times blocked). ``q`` or Ctrl-C
quits. ``--once`` prints one view without the live screen (two scrapes a
second apart, for the rates) and exits: for scripts and for a first look.

Needs rich and prometheus_client (``pip install 'geventsrv[metrics,bench]'``).
Exit codes: 0 after ``q``/Ctrl-C or ``--once``; 1 when the URL does not answer
at start (a server that stops answering later is shown as such, and the view
waits for it); 2 for bad arguments.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import sys
import termios
import time
import tty
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from geventsrv import cmdline, exitcodes
from geventsrv.stats import CLOSE_REASONS as REASONS

PROG = "python -m geventsrv.top"


class Unreachable(Exception):
    """The metrics URL did not answer; ``str()`` says how."""


@dataclass
class WorkerFigures:
    """What one process reported in one scrape."""

    open: float = 0.0
    accepted: float = 0.0
    received: float = 0.0
    closed: dict[str, float] = field(default_factory=dict)
    lag_sum: float = 0.0
    lag_count: float = 0.0
    blocked: float = 0.0
    blocked_seconds: float = 0.0
    rss: float = 0.0
    ready: float | None = None


@dataclass
class Scrape:
    """One fetch of /metrics: figures per worker (``"-"`` for a server alone), and when."""

    at: float
    workers: dict[str, WorkerFigures]


_FIELDS = {
    "geventsrv_connections_open": "open",
    "geventsrv_connections_accepted_total": "accepted",
    "geventsrv_received_bytes_total": "received",
    "geventsrv_loop_lag_seconds_sum": "lag_sum",
    "geventsrv_loop_lag_seconds_count": "lag_count",
    "geventsrv_loop_blocked_total": "blocked",
    "geventsrv_loop_blocked_seconds_total": "blocked_seconds",
    "process_resident_memory_bytes": "rss",
    "geventsrv_ready": "ready",
}


def metrics_url(text: str) -> str:
    """``HOST:PORT``, ``http://HOST:PORT`` or the full ``.../metrics`` URL -> the /metrics URL."""
    url = text if "://" in text else "http://" + text
    return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"


def parse(text: str, at: float) -> Scrape:
    """A :class:`Scrape` from the exposition ``text`` (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    workers: dict[str, WorkerFigures] = defaultdict(WorkerFigures)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            worker = sample.labels.get("worker", "-")
            if sample.name == "geventsrv_connections_closed_total":
                workers[worker].closed[sample.labels["reason"]] = sample.value
            elif sample.name in _FIELDS:
                setattr(workers[worker], _FIELDS[sample.name], sample.value)
    return Scrape(at, {name: workers[name] for name in sorted(workers)})


def fetch(url: str, timeout: float = 2.0) -> Scrape:
    """Scrape ``url`` once; :class:`Unreachable` if it does not answer with metrics."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            text = reply.read().decode()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Unreachable(f"{url} does not answer: {reason}") from None
    except http.client.HTTPException:  # an echo port, say, sends back what it got
        raise Unreachable(
            f"{url} does not answer HTTP: not a metrics endpoint (give the --metrics address)"
        ) from None
    if "geventsrv_" not in text:
        raise Unreachable(f"{url} answers, but not with geventsrv's metrics")
    return parse(text, time.monotonic())


def _rate(now: float, before: float, seconds: float) -> float:
    return max(now - before, 0.0) / seconds if seconds > 0 else 0.0


def render(now: Scrape, before: Scrape | None, url: str, note: str = "", live: bool = True) -> Any:
    """The view of one scrape (rates against ``before``) as a rich renderable.

    Fits an 80-column terminal: tables without vertical rules, one space
    between columns. ``live`` adds the "q quits" hint of the live view.
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    seconds = now.at - before.at if before else 0.0
    compact = {
        "box": box.SIMPLE_HEAD, "pad_edge": False, "collapse_padding": True,
        "padding": (0, 1), "header_style": "bold",
    }  # fmt: skip
    load = Table(title="now", title_justify="left", **compact)  # type: ignore[arg-type]
    closed = Table(
        title="closed so far, by reason",
        title_justify="left",
        **compact,  # type: ignore[arg-type]
    )
    columns = ("worker", "ready", "open", "accepts/s", "MB/s in", "RSS MiB", "mean lag", "blocked")
    for column in columns:
        load.add_column(column, justify="left" if column == "worker" else "right", no_wrap=True)
    for column in ("worker", *REASONS):
        closed.add_column(column, justify="left" if column == "worker" else "right", no_wrap=True)
    total_open = 0.0
    for worker, figures in now.workers.items():
        old = before.workers.get(worker) if before else None
        lag = figures.lag_sum / figures.lag_count if figures.lag_count else 0.0
        blocked = f"{figures.blocked:,.0f}"
        if figures.blocked:
            blocked += f", {figures.blocked_seconds:.1f} s"
        load.add_row(
            worker,
            {None: "", 1.0: "[green]yes[/]"}.get(figures.ready, "[red]no[/]"),
            f"{figures.open:,.0f}",
            f"{_rate(figures.accepted, old.accepted, seconds):,.0f}" if old else "-",
            f"{_rate(figures.received, old.received, seconds) / 1e6:,.2f}" if old else "-",
            f"{figures.rss / 2**20:,.1f}",
            f"{lag * 1000:.2f} ms",
            blocked,
        )
        closed.add_row(worker, *(f"{figures.closed.get(reason, 0):,.0f}" for reason in REASONS))
        total_open += figures.open
    header = Text.assemble(
        ("geventsrv ", "bold"),
        (url, "cyan"),
        f"  {total_open:,.0f} connection(s) open  ",
        (note, "red") if note else ("q or Ctrl-C quits" if live else "", "dim"),
    )
    return Group(header, load, closed)


def _poll_key(timeout: float) -> str:
    """A key pressed within ``timeout`` seconds, or ``""`` (stdin must be a terminal)."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return os.read(sys.stdin.fileno(), 1).decode(errors="replace") if ready else ""


@contextlib.contextmanager
def _keys() -> Iterator[None]:
    """Single key presses without Enter while the view runs; the terminal restored after."""
    if not sys.stdin.isatty():
        yield
        return
    saved = termios.tcgetattr(sys.stdin)
    tty.setcbreak(sys.stdin.fileno())
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def live(url: str, interval: float) -> int:
    """Refresh the view every ``interval`` seconds until q or Ctrl-C."""
    from rich.live import Live

    before = fetch(url)
    now, note = before, ""
    try:
        with _keys(), Live(render(now, None, url), auto_refresh=False, screen=False) as view:
            while True:
                deadline = time.monotonic() + interval
                while (left := deadline - time.monotonic()) > 0:
                    if not sys.stdin.isatty():
                        time.sleep(left)
                    elif _poll_key(left).lower() == "q":
                        return exitcodes.OK
                try:
                    before, now, note = now, fetch(url), ""
                except Unreachable as exc:
                    note = f"{exc} (retrying)"
                view.update(render(now, before, url, note), refresh=True)
    except KeyboardInterrupt:
        return exitcodes.OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = cmdline.Parser(
        prog=PROG, description="A live view of a running geventsrv, from its /metrics."
    )
    parser.add_argument("url", help="the server's --metrics address: HOST:PORT or a URL")
    parser.add_argument(
        "--interval",
        type=cmdline.positive_number,
        default=1.0,
        help="seconds between refreshes (default: 1)",
    )
    parser.add_argument("--once", action="store_true", help="print one view and exit")
    args = parser.parse_args(argv)
    if not args.interval > 0:
        parser.error(f"--interval must be a positive number of seconds, got {args.interval}")
    try:
        import prometheus_client  # noqa: F401
        import rich  # noqa: F401
    except ImportError as exc:
        print(f"{PROG}: error: needs {exc.name}: pip install 'geventsrv[metrics,bench]'")
        return exitcodes.USAGE
    url = metrics_url(args.url)
    try:
        if args.once:
            from rich.console import Console

            before = fetch(url)
            time.sleep(args.interval)
            Console().print(render(fetch(url), before, url, live=False))
            return exitcodes.OK
        return live(url, args.interval)
    except Unreachable as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exitcodes.INTERNAL_ERROR


if __name__ == "__main__":
    cmdline.run(main, PROG)
