"""Turn the lab's runs into medians, a terminal table, JSON, CSV and PNG charts."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
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
)
#: Figures added up over rounds: any error or mismatch in any round shows.
TOTALS = ("requests", "errors", "mismatches")


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
            values = [run[name] for run in group if run.get(name) is not None]
            row[name] = statistics.median(values) if values else None
        for name in TOTALS:
            row[name] = sum(run[name] for run in group)
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


def storm_table(rows: list[dict[str, Any]]) -> Any:
    """A rich Table of the storm medians."""
    from rich.table import Table

    grid = Table(title="Connection storm: connections opened back to back, one echo each")
    headings = ("server", "conns", "connect s", "first echo p50 s", "p99 s", "max s")
    for heading in (*headings, "idle KiB/conn", "failed"):
        grid.add_column(heading, justify="left" if heading == "server" else "right")
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
    paths = [out / "results.json", out / "runs.csv", out / "medians.csv"]
    storm_rows = storm_medians(storms or [])
    results = {"meta": meta, "runs": runs, "medians": rows, "storms": storms or []}
    results["storm_medians"] = storm_rows
    paths[0].write_text(json.dumps(results, indent=2))
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


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> Any:
    """A rich Table of the medians."""
    from rich.table import Table

    grid = Table(title="Echo servers: medians over rounds", show_lines=False)
    for heading in (
        "size",
        "conns",
        "server",
        "req/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU µs/req",
        "RSS MiB",
        "KiB/conn",
        "client CPU",
        "errors",
    ):
        grid.add_column(heading, justify="left" if heading == "server" else "right")
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
        grid.add_row(
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
            f"{row['client_cpu_share']:.0%}{' (bound)' if row['client_bound'] else ''}",
            flags or "0",
        )
    return grid


def charts(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """PNG charts: throughput, p99 latency and memory per connection against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({row["size"] for row in rows})
    servers = list(dict.fromkeys(row["server"] for row in rows))
    specs = [
        ("throughput.png", "requests_per_s", "requests/s", "Throughput vs connections"),
        ("latency_p99.png", "p99_us", "p99 latency (µs)", "p99 latency vs connections"),
        (
            "memory_per_connection.png",
            "rss_per_connection_kib",
            "RSS per connection (KiB)",
            "Server memory per connection",
        ),
    ]
    paths = []
    for filename, key, ylabel, title in specs:
        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            for server in servers:
                points = sorted(
                    (row["connections"], row[key])
                    for row in rows
                    if row["server"] == server and row["size"] == size and row[key] is not None
                )
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker="o", label=server)
            ax.set_xscale("log")
            if key == "p99_us":
                ax.set_yscale("log")
            ax.set_title(f"{size:,} B messages")
            ax.set_xlabel("connections")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
        axes[0][-1].legend(fontsize="small")
        fig.suptitle(title)
        fig.tight_layout()
        path = out / filename
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
