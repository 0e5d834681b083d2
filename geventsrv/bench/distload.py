"""Locust as the cluster's load: one master and L workers, or one process, headless.

:class:`LocustRun` starts locust on :mod:`geventsrv.bench.clusterusers` and,
when stopped, gathers what every locust process recorded
(:class:`Timeline`): counts per 100 ms per backend host, and each failure with
its time. Locust's own CSV files (``locust_stats.csv``, ``locust_failures.csv``)
are left in the run's directory as locust wrote them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from geventsrv.bench.haproxy import free_port

#: The locustfile; not imported here (importing locust monkey-patches the process).
LOCUSTFILE = str(Path(__file__).with_name("clusterusers.py"))
BUCKET = 0.1  # seconds per timeline bucket


class Recorder:
    """Counts per (bucket, host, kind) and every failure with its time (wall clock)."""

    def __init__(self) -> None:
        #: "bucket|host|kind" -> [ok, failed, max_ms (all), total_ms (of the ok ones)]
        self.buckets: dict[str, list[float]] = {}
        self.failures: list[tuple[float, str, str, str]] = []

    def add(self, when: float, host: str, kind: str, millis: float, error: str | None) -> None:
        key = f"{int(when / BUCKET)}|{host}|{kind}"
        row = self.buckets.setdefault(key, [0, 0, 0.0, 0.0])
        row[0 if error is None else 1] += 1
        row[2] = max(row[2], millis)
        if error is None:
            row[3] += millis
        else:
            self.failures.append((round(when, 3), host, kind, error))

    def write(self, directory: str, name: str = "") -> None:
        """Into ``directory``, as ``<name or this process's pid>.json``."""
        path = Path(directory) / f"{name or os.getpid()}.json"
        path.write_text(json.dumps({"bucket": BUCKET, **vars(self)}))


@dataclass
class Timeline:
    """What the users saw: ``buckets[(bucket, host, kind)] = [ok, failed, max_ms, total_ms]``."""

    bucket: float = BUCKET
    buckets: dict[tuple[int, str, str], list[float]] = field(default_factory=dict)
    failures: list[tuple[float, str, str, str]] = field(default_factory=list)
    processes: int = 0

    @classmethod
    def read(cls, directory: Path) -> Timeline:
        timeline = cls()
        for path in sorted(directory.glob("*.json")):
            record = json.loads(path.read_text())
            timeline.processes += 1
            for key, (ok, failed, longest, total) in record["buckets"].items():
                number, host, kind = key.split("|")
                row = timeline.buckets.setdefault((int(number), host, kind), [0, 0, 0.0, 0.0])
                row[0] += ok
                row[1] += failed
                row[2] = max(row[2], longest)
                row[3] += total
            timeline.failures.extend(tuple(item) for item in record["failures"])
        timeline.failures.sort()
        return timeline

    def between(self, start: float, end: float) -> Timeline:
        """The part of the timeline whose requests started in [start, end)."""
        low, high = int(start / self.bucket), int(end / self.bucket)
        part = Timeline(self.bucket, processes=self.processes)
        part.buckets = {key: row for key, row in self.buckets.items() if low <= key[0] < high}
        part.failures = [f for f in self.failures if start <= f[0] < end]
        return part

    def totals(self, kind: str = "echo") -> dict[str, int]:
        """Successful requests of ``kind`` per host."""
        counts: dict[str, int] = defaultdict(int)
        for (_, host, row_kind), row in self.buckets.items():
            if row_kind == kind:
                counts[host] += int(row[0])
        return dict(counts)

    def requests(self) -> int:
        """Successful echoes, all hosts."""
        return sum(self.totals().values())

    def mean_ms(self) -> float:
        rows = [row for (_, _, kind), row in self.buckets.items() if kind == "echo"]
        done = sum(row[0] for row in rows)
        return sum(row[3] for row in rows) / done if done else float("nan")

    def longest_ms(self) -> float:
        return max((row[2] for row in self.buckets.values()), default=0.0)

    def failure_counts(self) -> dict[str, int]:
        """Failures by what went wrong (``reset``, ``refused``, ``eof``, ``wrong bytes``...)."""
        counts: dict[str, int] = defaultdict(int)
        for _, _, _, error in self.failures:
            counts[error] += 1
        return dict(counts)

    def series(self, step: float = 0.5) -> dict[str, list[tuple[float, float]]]:
        """Echo requests/s per host, and failures/s (key ``"failures"``), per ``step`` s.

        Every series covers the same bins, zeros included (a host that served
        nothing for a while shows as 0, not as a line drawn across the gap);
        the last bin, usually cut short by the end of the run, is left out.
        """
        per = max(1, round(step / self.bucket))
        sums: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for (number, host, kind), row in self.buckets.items():
            if kind == "echo":
                sums[host][number // per] += row[0]
            sums["failures"][number // per] += row[1]
        slots = {slot for counts in sums.values() for slot in counts}
        if not slots:
            return {}
        span = range(min(slots), max(slots))
        seconds = per * self.bucket
        return {
            host: [(slot * seconds, counts.get(slot, 0.0) / seconds) for slot in span]
            for host, counts in sums.items()
        }


class LocustRun:
    """Locust running headless against ``host`` until :meth:`stop` (or ``limit`` seconds).

    With ``workers`` > 0, locust's distributed mode: a master that waits for
    all of them (``--expect-workers``), each a separate process, as on
    separate load machines. With 0, one process.
    """

    def __init__(
        self,
        host: tuple[str, int],
        users: int,
        workers: int,
        directory: Path,
        limit: float,
        settings: dict[str, str],
    ) -> None:
        self.directory = directory
        self.records = directory / "records"
        self.records.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            **settings,
            GEVENTSRV_CLUSTER_EVENTS=str(self.records),
            PYTHONUNBUFFERED="1",
        )
        locust = [sys.executable, "-m", "locust", "-f", LOCUSTFILE]
        common = ["--headless", "--only-summary", "--loglevel", "WARNING"]
        master = [
            *locust,
            *common,
            "-H",
            f"tcp://{host[0]}:{host[1]}",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{int(limit) + 1}s",
            "--csv",
            str(directory / "locust"),
        ]
        self.log = open(directory / "locust.log", "w")  # noqa: SIM115 (closed by stop)
        self.workers: list[subprocess.Popen[bytes]] = []
        if workers:
            port = free_port()
            master += [
                "--master",
                "--expect-workers",
                str(workers),
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
            ]
        self.master = self._start(master, env)
        for _ in range(workers):
            worker = [*locust, *common, "--worker", "--master-host", "127.0.0.1"]
            self.workers.append(self._start([*worker, "--master-port", str(port)], env))
        self.started = time.time()

    def _start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_running(self, seconds: float = 30.0) -> None:
        """Block until locust has connected its workers and spawned its users (its
        first stats row); raise, pointing at locust's log, if it exits or never does."""
        deadline = time.monotonic() + seconds
        stats = self.directory / "locust_stats_history.csv"
        while time.monotonic() < deadline:
            if self.master.poll() is not None:
                raise RuntimeError(f"locust exited early: see {self.directory / 'locust.log'}")
            if stats.exists() and len(stats.read_text().splitlines()) > 1:
                return
            time.sleep(0.1)
        raise RuntimeError(f"locust did not start: see {self.directory / 'locust.log'}")

    def stop(self) -> Timeline:
        """Stop locust (SIGTERM: it writes its CSVs and every process its record)."""
        procs = [self.master, *self.workers]
        if self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()
        return Timeline.read(self.records)

    def kill(self) -> None:
        """Kill what still runs (cleanup after an error or Ctrl-C)."""
        for proc in [self.master, *self.workers]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not self.log.closed:
            self.log.close()
