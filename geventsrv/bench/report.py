"""Turn the lab's runs into medians, a terminal table, JSON, CSV and PNG charts."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Figures summarised as the median over rounds.
FIGURES = (
    "requests_per_s",
    "mb_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "server_cpu_us_per_request",
    "server_cpu_share",
    "server_rss_mib",
    "rss_per_connection_kib",
    "client_cpu_share",
    "longest_wait_s",
    "syscalls_per_request",
)
#: Figures added up over rounds: any error, mismatch or unserved connection in any round shows.
TOTALS = ("requests", "errors", "mismatches", "unserved")


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, connections, server), in the order first seen: medians of rounds."""
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["size"], run["connections"], run["server"]].append(run)
    rows = []
    for (size, connections, server), group in groups.items():
        row: dict[str, Any] = {"server": server, "size": size, "connections": connections}
        row["rounds"] = len(group)
        for name in FIGURES:
            values = [
                run[name] for run in group if run.get(name) is not None
            ]  # older runs lack some
            row[name] = statistics.median(values) if values else None
        for name in TOTALS:
            row[name] = sum(run.get(name, 0) for run in group)
        row["client_bound"] = any(run["client_bound"] for run in group)
        row["first_error"] = next((run["first_error"] for run in group if run["first_error"]), "")
        rows.append(row)
    return rows


#: Connection-storm figures summarised as the median over rounds.
STORM_FIGURES = (
    "connect_s",
    "first_echo_p50_s",
    "first_echo_p99_s",
    "first_echo_max_s",
    "idle_rss_per_connection_kib",
)


def storm_medians(storms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per server: medians of the storm figures, failed connections summed."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for storm in storms:
        groups[storm["server"], storm["connections"]].append(storm)
    rows = []
    for (server, connections), group in groups.items():
        row: dict[str, Any] = {"server": server, "connections": connections, "rounds": len(group)}
        for name in STORM_FIGURES:
            row[name] = statistics.median(storm[name] for storm in group)
        row["failed"] = sum(storm["failed"] for storm in group)
        row["first_error"] = next((s["first_error"] for s in group if s["first_error"]), "")
        rows.append(row)
    return rows


def _grid(title: str, headings: Sequence[str], rows: list[dict[str, Any]]) -> Any:
    """A rich Table without vertical rules; server names never cut short."""
    from rich import box
    from rich.table import Table

    grid = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    longest = max((len(row["server"]) for row in rows), default=6)
    for heading in headings:
        if heading == "server":
            grid.add_column(heading, no_wrap=True, min_width=longest)
        else:
            grid.add_column(heading, justify="right")
    return grid


def storm_table(rows: list[dict[str, Any]]) -> Any:
    """A rich Table of the storm medians."""
    headings = ("server", "conns", "connect s", "first echo p50 s", "p99 s", "max s")
    grid = _grid(
        "Connection storm: connections opened back to back, one echo each",
        (*headings, "idle KiB/conn", "failed"),
        rows,
    )
    for row in rows:
        grid.add_row(
            row["server"],
            f"{row['connections']:,}",
            _fmt(row["connect_s"], 2),
            _fmt(row["first_echo_p50_s"], 2),
            _fmt(row["first_echo_p99_s"], 2),
            _fmt(row["first_echo_max_s"], 2),
            _fmt(row["idle_rss_per_connection_kib"], 1),
            f"[yellow]{row['failed']}[/]" if row["failed"] else "0",
        )
    return grid


def write_files(
    out: Path,
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    storms: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """Write results.json, runs.csv, medians.csv (and storm.csv) to ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "runs.csv", out / "medians.csv", out / "summary.md"]
    storm_rows = storm_medians(storms or [])
    results = {"meta": meta, "runs": runs, "medians": rows, "storms": storms or []}
    results["storm_medians"] = storm_rows
    paths[0].write_text(json.dumps(results, indent=2))
    paths[3].write_text(summary(rows, meta))
    tables = [(paths[1], runs), (paths[2], rows)]
    if storm_rows:
        paths.append(out / "storm.csv")
        tables.append((paths[-1], storm_rows))
    for path, table in tables:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return paths


def summary(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Markdown: per point, every server against geventsrv, and the machine it ran on.

    A ranking between IO models is a measurement on one machine: Python-heavy
    paths and system calls do not scale alike from one CPU to another.
    """
    from geventsrv.bench.machine import describe

    lines = [
        "# Lab summary",
        "",
        f"Measured on: {describe(meta.get('machine', {}))}.",
        "",
        "Rankings between IO models depend on the machine: rerun `python -m geventsrv.bench` "
        "to measure yours. Ratios are against geventsrv at the same point, same run.",
    ]
    points = dict.fromkeys((row["size"], row["connections"]) for row in rows)
    for size, connections in points:
        mine = [r for r in rows if (r["size"], r["connections"]) == (size, connections)]
        base = next((r for r in mine if r["server"] == HIGHLIGHT), None)
        lines += ["", f"## {size:,} B, {connections:,} connections", ""]
        lines += ["| server | requests/s | vs geventsrv | CPU µs/request | unserved |",
                  "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for row in sorted(mine, key=lambda r: -(r["requests_per_s"] or 0)):
            ratio = "-"
            if base and base["requests_per_s"] and row["requests_per_s"]:
                ratio = f"{row['requests_per_s'] / base['requests_per_s']:.2f}x"
            bound = " (client-bound)" if row["client_bound"] else ""
            lines.append(
                f"| {row['server']} | {_fmt(row['requests_per_s'])}{bound} | {ratio} | "
                f"{_fmt(row['server_cpu_us_per_request'], 1)} | {row.get('unserved', 0):,} |"
            )
    return "\n".join(lines) + "\n"


#: The figures :func:`markdown_tables` lays out, with their headings and decimals.
TABLES = (
    ("requests_per_s", "requests/s", 0),
    ("p99_us", "p99 latency, µs", 0),
    ("server_cpu_us_per_request", "server CPU µs per request", 1),
    ("rss_per_connection_kib", "server RSS per connection, KiB", 1),
)


def markdown_tables(rows: list[dict[str, Any]], storms: list[dict[str, Any]]) -> str:
    """The results as markdown: per message size and figure, servers x connections.

    A ``*`` marks a point where the load generator was the bottleneck in some
    round; ``failed`` one where the server completed nothing or returned wrong bytes.
    """
    servers = list(dict.fromkeys(row["server"] for row in rows))
    sizes = sorted({row["size"] for row in rows})
    counts = sorted({row["connections"] for row in rows})
    index = {(r["server"], r["size"], r["connections"]): r for r in rows}
    out = []
    for size in sizes:
        for key, heading, digits in TABLES:
            out += [f"**{heading}** ({size:,} B messages)", ""]
            out.append("| server | " + " | ".join(f"{n:,} conns" for n in counts) + " |")
            out.append("| --- |" + " ---: |" * len(counts))
            for server in servers:
                cells = []
                for n in counts:
                    row = index.get((server, size, n))
                    if row is None:
                        cells.append("")
                    elif _failed(row):
                        cells.append("failed")
                    else:
                        cells.append(_fmt(row[key], digits) + ("*" if row["client_bound"] else ""))
                out.append(f"| {server} | " + " | ".join(cells) + " |")
            out.append("")
    if storms:
        rows_ = storm_medians(storms)
        out += [f"**connection storm** ({rows_[0]['connections']:,} connects back to back)", ""]
        out.append("| server | connect all, s | first echo p50, s | p99, s | max, s | "
                   "idle KiB per connection | failed |")  # fmt: skip
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in rows_:
            out.append(
                f"| {row['server']} | {row['connect_s']:.2f} | {row['first_echo_p50_s']:.2f} | "
                f"{row['first_echo_p99_s']:.2f} | {row['first_echo_max_s']:.2f} | "
                f"{row['idle_rss_per_connection_kib']:.1f} | {row['failed']} |"
            )
        out.append("")
    return "\n".join(out)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


#: The medians table's columns, and the ones a narrow terminal shows.
COLUMNS = (
    "size", "conns", "server", "req/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/req",
    "RSS MiB", "KiB/conn", "unserved", "longest wait s", "syscalls/req", "client CPU", "errors",
)  # fmt: skip
NARROW_COLUMNS = ("size", "conns", "server", "req/s", "p99 µs", "CPU µs/req", "KiB/conn", "errors")
#: Below this many columns of terminal, the medians table shows NARROW_COLUMNS.
WIDE_ENOUGH = 150


def table(rows: list[dict[str, Any]], width: int = WIDE_ENOUGH) -> Any:
    """A rich Table of the medians; narrower than ``WIDE_ENOUGH``, the main columns only."""
    shown = COLUMNS if width >= WIDE_ENOUGH else NARROW_COLUMNS
    grid = _grid("Echo servers: medians over rounds", shown, rows)
    if shown is NARROW_COLUMNS:
        grid.caption = "every column: summary.md and medians.csv beside the charts"
    previous = None
    for row in rows:
        point = (row["size"], row["connections"])
        if previous is not None and point != previous:
            grid.add_section()
        previous = point
        flags = ""
        if row["mismatches"]:
            flags = f"[bold red]{row['mismatches']} MISMATCHED[/]"
        elif row["errors"]:
            flags = f"[yellow]{row['errors']}[/]"
        cells = dict(
            zip(
                COLUMNS,
                (
                    f"{row['size']:,}",
                    f"{row['connections']:,}",
                    row["server"],
                    _fmt(row["requests_per_s"]),
                    _fmt(row["mb_per_s"], 1),
                    _fmt(row["p50_us"]),
                    _fmt(row["p99_us"]),
                    _fmt(row["p999_us"]),
                    _fmt(row["server_cpu_us_per_request"], 1),
                    _fmt(row["server_rss_mib"], 1),
                    _fmt(row["rss_per_connection_kib"], 1),
                    f"[bold red]{row['unserved']:,}[/]" if row["unserved"] else "0",
                    _fmt(row.get("longest_wait_s"), 2),
                    _fmt(row.get("syscalls_per_request"), 2),
                    f"{row['client_cpu_share']:.0%}{' (bound)' if row['client_bound'] else ''}",
                    flags or "0",
                ),
                strict=True,
            )
        )
        grid.add_row(*(cells[heading] for heading in shown))
    return grid


#: The server the charts single out: the one this project is about.
HIGHLIGHT = "geventsrv"


def _failed(row: dict[str, Any]) -> bool:
    """A point where the server served nothing, or wrong bytes: marked, never drawn as 0."""
    return bool(row["mismatches"]) or not row["requests_per_s"]


def _style(server: str, index: int) -> dict[str, Any]:
    if server == HIGHLIGHT:
        return {"color": "black", "linewidth": 2.8, "marker": "o", "zorder": 5}
    # No red: red marks failed points.
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
               "tab:olive", "tab:cyan", "tab:gray"]  # fmt: skip
    return {"color": palette[index % len(palette)], "linewidth": 1.3, "marker": ".", "alpha": 0.85}


def charts(
    out: Path, rows: list[dict[str, Any]], storms: list[dict[str, Any]] | None = None
) -> list[Path]:
    """PNG charts: throughput, p99 latency and memory per connection against concurrency,
    and, with a storm, time to first echo and idle memory per server.

    geventsrv is drawn in black and bold; points where a server completed nothing (or
    returned wrong bytes) are marked with a red x at the bottom of the panel instead of
    being drawn as 0; the legend sits outside the data.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = sorted({row["size"] for row in rows})
    servers = list(dict.fromkeys(row["server"] for row in rows))
    specs = [
        ("throughput.png", "requests_per_s", "requests/s", "Throughput vs connections", False),
        ("latency_p99.png", "p99_us", "p99 latency (µs, log)", "p99 latency vs connections", True),
        (
            "memory_per_connection.png",
            "rss_per_connection_kib",
            "RSS per connection (KiB, log)",
            "Server memory per connection (10 connections and more; "
            "points within noise, 0 or below, cannot sit on a log axis and are left out)",
            True,
        ),
    ]
    paths = []
    for filename, key, ylabel, title, log_y in specs:
        fig, axes = plt.subplots(
            1, len(sizes), figsize=(4.6 * len(sizes) + 2.2, 4.2), squeeze=False
        )
        failed_shown = False
        for ax, size in zip(axes[0], sizes, strict=True):
            for index, server in enumerate(servers):
                mine = [r for r in rows if r["server"] == server and r["size"] == size]
                if key == "rss_per_connection_kib":
                    # One connection's share of the RSS is noise: a page more or less.
                    mine = [r for r in mine if r["connections"] >= 10]
                good = sorted(
                    (r["connections"], r[key])
                    for r in mine
                    if not _failed(r) and r[key] is not None and (r[key] > 0 or not log_y)
                )
                if good:
                    xs, ys = zip(*good, strict=True)
                    ax.plot(xs, ys, label=server, **_style(server, index))
                bad = [r["connections"] for r in mine if _failed(r)]
                if bad:
                    ax.scatter(
                        bad, [0.03] * len(bad), transform=ax.get_xaxis_transform(),
                        marker="x", color="red", s=60, zorder=6, clip_on=False,
                        label=None if failed_shown else "completed nothing (failed)",
                    )  # fmt: skip
                    failed_shown = True
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
            if log_y:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)
            ax.set_title(f"{size:,} B messages")
            ax.set_xlabel("connections")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
        handles: dict[str, Any] = {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        failed = handles.pop("completed nothing (failed)", None)
        handles = {server: handles[server] for server in servers if server in handles}
        if failed is not None:
            handles["completed nothing (failed)"] = failed
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
        fig.legend(handles.values(), handles.keys(), loc="center right", fontsize="small")
        path = out / filename
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    if storms:
        paths.append(_storm_chart(out / "storm.png", storm_medians(storms)))
    return paths


def _storm_chart(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Time to first echo (p50, p99, max) and idle memory per connection, per server."""
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda row: row["first_echo_max_s"] or 0)
    names = [row["server"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.8))
    positions = range(len(rows))
    for offset, key, label, color in (
        (-0.25, "first_echo_p50_s", "p50", "tab:blue"),
        (0.0, "first_echo_p99_s", "p99", "tab:orange"),
        (0.25, "first_echo_max_s", "max", "tab:red"),
    ):
        left.barh([p + offset for p in positions], [row[key] or 0 for row in rows], height=0.25,
                  color=color, label=label)  # fmt: skip
    right.barh(list(positions), [row["idle_rss_per_connection_kib"] or 0 for row in rows],
               color=["black" if n == HIGHLIGHT else "tab:gray" for n in names])  # fmt: skip
    connections = rows[0]["connections"] if rows else 0
    left.set_title(f"Storm of {connections:,} connects: time to first echo")
    left.set_xlabel("seconds from connect() to a full echo")
    right.set_title("Idle memory per connection")
    right.set_xlabel("KiB of server RSS")
    for axis in (left, right):
        axis.set_yticks(list(positions), names)
        axis.grid(True, axis="x", alpha=0.3)
    for label in left.get_yticklabels() + right.get_yticklabels():
        if label.get_text() == HIGHLIGHT:
            label.set_fontweight("bold")
    left.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
