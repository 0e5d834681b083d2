"""Verdicts, files and the timeline chart of ``bench cluster``.

Each ``judge_*`` function turns a scenario's figures into :class:`Verdict`
rows: what the target is, what was measured, whether it held. The command
exits 1 when any row did not hold.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geventsrv.bench.cluster import Settings
from geventsrv.bench.distload import Timeline

TOLERANCE = 0.15  # a host's share may differ from the mean by this fraction


@dataclass(frozen=True)
class Verdict:
    scenario: str
    target: str
    measured: str
    held: bool


def spread(shares: dict[str, int]) -> float:
    """The largest relative distance of any host's count from the mean (0.1 = 10%)."""
    mean = statistics.fmean(shares.values()) if shares else 0.0
    if not mean:
        return float("inf")
    return max(abs(count - mean) / mean for count in shares.values())


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items())) or "none"


def share_verdict(what: str, shares: dict[str, int], hosts: int, source: str) -> Verdict:
    """Every one of ``hosts`` has a share of ``what`` within the tolerance of the mean."""
    deviation = spread(shares)
    return Verdict(
        "steady",
        f"every host's share of {what} within ±{TOLERANCE:.0%} of the mean ({source})",
        f"{_counts(shares)}: largest deviation {deviation:.1%}",
        len(shares) == hosts and deviation <= TOLERANCE,
    )


def judge_steady(result: dict[str, Any], hosts: int) -> list[Verdict]:
    timeline: Timeline = result["timeline"]
    failures = timeline.failure_counts()
    return [
        share_verdict("requests", result["requests"], hosts, "info replies"),
        share_verdict("connections", result["connections"], hosts, "each host's /metrics"),
        Verdict("steady", "no failed request", _counts(failures), not failures),
    ]


def judge_raw(result: dict[str, Any], hosts: int) -> list[Verdict]:
    """The C load generator's steady run: shares from /metrics, every byte right."""
    return [
        share_verdict("requests", result["requests"], hosts, "its /metrics"),
        share_verdict("connections", result["connections"], hosts, "its /metrics"),
        Verdict(
            "steady",
            "raw rate through HAProxy (C load generator), no error, no wrong byte",
            f"{result['requests_per_s']:,.0f} requests/s, p50 {result['p50_us']:.0f} µs, "
            f"p99 {result['p99_us']:.0f} µs; {result['errors']} errors, "
            f"{result['mismatches']} wrong replies {result['first_error']}".rstrip(),
            not result["errors"] and not result["mismatches"] and result["requests_per_s"] > 0,
        ),
    ]


def cost_summary(result: dict[str, Any]) -> dict[str, float]:
    """Medians over rounds of mean echo time and requests/s, per path, and the difference."""
    runs = result["runs"]

    def median(path: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs if run["path"] == path))

    summary = {
        f"{path}_{key}": median(path, key)
        for path in ("balancer", "direct")
        for key in ("mean_us", "requests_per_s")
    }
    summary["haproxy_cpu_us_per_request"] = median("balancer", "haproxy_cpu_us_per_request")
    summary["added_us"] = summary["balancer_mean_us"] - summary["direct_mean_us"]
    summary["throughput_ratio"] = (
        summary["balancer_requests_per_s"] / summary["direct_requests_per_s"]
    )
    return summary


def judge_cost(result: dict[str, Any]) -> list[Verdict]:
    summary = cost_summary(result)
    failed = sum(run["failures"] for run in result["runs"])
    measured = (
        f"mean echo {summary['balancer_mean_us']:.0f} µs through HAProxy vs "
        f"{summary['direct_mean_us']:.0f} µs direct: +{summary['added_us']:.0f} µs per request; "
        f"{summary['throughput_ratio']:.2f}x the requests/s; HAProxy's CPU "
        f"{summary['haproxy_cpu_us_per_request']:.1f} µs per request"
    )
    return [Verdict("steady", "the balancer's cost per request, measured", measured, not failed)]


def judge_rolling(result: dict[str, Any], settings: Settings) -> list[Verdict]:
    timeline: Timeline = result["timeline"]
    failures = timeline.failure_counts()
    limit_ms = (settings.shutdown_delay + 1) * 1000
    restarted = sum(1 for event in result["events"] if event["event"] == "up in HAProxy")
    return [
        Verdict(
            "rolling",
            "every host restarted under load and back in HAProxy",
            f"{restarted} of {settings.hosts}",
            restarted == settings.hosts,
        ),
        Verdict(
            "rolling",
            "0 failed connects, 0 resets, 0 wrong or missing bytes",
            f"{timeline.requests():,} requests; failures: {_counts(failures)}",
            not failures and timeline.requests() > 0,
        ),
        Verdict(
            "rolling",
            f"no request waited longer than the shutdown delay + 1 s ({limit_ms:.0f} ms)",
            f"longest {timeline.longest_ms():.0f} ms",
            timeline.longest_ms() <= limit_ms,
        ),
    ]


def judge_failover(result: dict[str, Any], settings: Settings) -> list[Verdict]:
    timeline: Timeline = result["timeline"]
    victim, killed = result["victim"], result["killed"]
    labels: dict[str, str] = result["labels"]
    name = labels[victim]
    on_victim = [f for f in timeline.failures if f[1] == victim]
    connects = [f for f in timeline.failures if f[2] == "connect"]
    others = [f for f in timeline.failures if f[1] != victim and f[2] != "connect"]
    last_connect = max((f[0] - killed for f in connects), default=0.0)
    window = settings.detection
    after = timeline.between(result["back"], result["ended"]).totals()
    share = after.get(victim, 0) / max(1, sum(after.values()))
    return [
        Verdict(
            "failover",
            f"only connections open on the killed host fail (at most {settings.users}, one per "
            "user)",
            f"{len(on_victim)} on {name}, {len(others)} elsewhere",
            not others and len(on_victim) <= settings.users,
        ),
        Verdict(
            "failover",
            f"new connections succeed again within check interval x fall ({window:g} s)",
            f"{len(connects)} failed connect(s), the last {last_connect:.2f} s after the kill; "
            f"HAProxy marked it down after {result['detected_after']:.2f} s",
            last_connect <= window + timeline.bucket,
        ),
        Verdict(
            "failover",
            "the restarted host takes load again",
            f"{name}: {after.get(victim, 0):,} requests ({share:.0%}) after it was back",
            after.get(victim, 0) > 0,
        ),
    ]


def timeline_rows(scenario: str, timeline: Timeline, labels: dict[str, str]) -> list[list[Any]]:
    """CSV rows: scenario, time (s since the epoch), host, kind, ok, failed, max ms."""
    return [
        [
            scenario,
            round(number * timeline.bucket, 3),
            labels.get(host, host),
            kind,
            int(row[0]),
            int(row[1]),
            round(row[2], 2),
        ]
        for (number, host, kind), row in sorted(timeline.buckets.items())
    ]


def write_files(
    out: Path,
    meta: dict[str, Any],
    results: dict[str, dict[str, Any]],
    verdicts: list[Verdict],
    labels: dict[str, str],
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    rows: list[list[Any]] = []
    for scenario, result in results.items():
        plain = {key: value for key, value in result.items() if key != "timeline"}
        timeline = result.get("timeline")
        if isinstance(timeline, Timeline):
            plain["failures"] = timeline.failure_counts()
            plain["requests_total"] = timeline.requests()
            plain["longest_ms"] = round(timeline.longest_ms(), 1)
            rows += timeline_rows(scenario, timeline, labels)
        figures[scenario] = plain
    if "cost" in results:
        figures["cost"]["summary"] = cost_summary(results["cost"])
    document = {**meta, "results": figures, "verdicts": [asdict(v) for v in verdicts]}
    json_path = out / "cluster.json"
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if not rows:  # the C load generator records no timeline
        return [json_path]
    csv_path = out / "cluster_timeline.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scenario", "time", "host", "kind", "ok", "failed", "max_ms"])
        writer.writerows(rows)
    return [json_path, csv_path]


def chart(out: Path, results: dict[str, dict[str, Any]], labels: dict[str, str]) -> Path:
    """One panel per scenario: echo requests/s per host, failures/s, events as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        name
        for name in ("steady", "rolling", "failover")
        if isinstance(results.get(name, {}).get("timeline"), Timeline)
    ]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(11, 3.4 * len(panels)), squeeze=False, constrained_layout=True
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    hosts = sorted(set(labels.values()))
    for ax, scenario in zip(axes[:, 0], panels, strict=True):
        result = results[scenario]
        timeline: Timeline = result["timeline"]
        series = timeline.series()
        origin = min((points[0][0] for points in series.values() if points), default=0.0)
        for label, points in sorted(series.items(), key=lambda item: labels.get(item[0], item[0])):
            if label == "failures" or not points:
                continue
            name = labels.get(label, label)
            colour = colours[hosts.index(name) % len(colours)] if name in hosts else "grey"
            ax.plot(
                [t - origin for t, _ in points],
                [r for _, r in points],
                label=name,
                color=colour,
                drawstyle="steps-post",
            )
        failed = [(t - origin, r) for t, r in series.get("failures", []) if r > 0]
        errors = None
        if failed:  # few beside thousands of requests/s: their own axis, in red
            errors = ax.twinx()
            errors.bar(
                [t for t, _ in failed],
                [r for _, r in failed],
                width=0.5,
                align="edge",
                color="red",
                alpha=0.6,
                label="failed requests/s (right axis)",
            )
            errors.set_ylabel("failed requests/s", color="red")
            errors.set_ylim(0, max(r for _, r in failed) * 4)
            errors.tick_params(axis="y", colors="red")
        for event in result.get("events", []):
            when = event["time"] - origin
            style = {"SIGKILL": "red", "SIGTERM": "black"}.get(event["event"])
            if style is None and event["event"] != "up in HAProxy":
                continue
            ax.axvline(when, color=style or "green", linestyle="--", linewidth=0.9)
            ax.annotate(
                f"{event['event']} {event['host']}",
                (when, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=7,
                va="top",
                ha="right",
            )
        verdict = "" if failed else ", no failed request"
        ax.set_title(f"{scenario}: echo requests/s per host (0.5 s bins){verdict}")
        ax.set_xlabel("seconds")
        ax.set_ylabel("requests/s")
        ax.set_ylim(bottom=0)
        handles, names = ax.get_legend_handles_labels()
        if errors is not None:
            more, more_names = errors.get_legend_handles_labels()
            handles, names = handles + more, names + more_names
        ax.legend(handles, names, loc="lower left", fontsize=8)
    path = out / "cluster_timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
