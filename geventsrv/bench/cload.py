"""The C load generator (``loadgen.c``): built on first use, driven like a load worker.

The Python generator in :mod:`geventsrv.bench.loadgen` spends ~15 µs of its
own CPU per request, so against the fastest servers it, not the server, sets
the pace. The C one does the same closed loop for a fraction of that and also
runs connection storms. It is compiled once per source version into the user's
cache directory with the system C compiler; :func:`build` says why when it
cannot be.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from geventsrv.bench.loadgen import Histogram, WorkerResult

SOURCE = Path(__file__).with_name("loadgen.c")


class BuildError(RuntimeError):
    """The C load generator could not be built here; ``str()`` says why."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "geventsrv"


def build() -> Path:
    """The path of the compiled generator, compiling it first if needed."""
    source = SOURCE.read_bytes()
    binary = _cache_dir() / f"loadgen-{hashlib.sha256(source).hexdigest()[:16]}"
    if binary.exists():
        return binary
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise BuildError("no C compiler (cc or gcc) found; use --client python")
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name, then rename: concurrent runs never see half a file.
    with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
        partial = Path(scratch) / "loadgen"
        done = subprocess.run(
            [compiler, "-O2", "-o", str(partial), str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise BuildError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[-500:]}")
        partial.replace(binary)
    return binary


def _start(
    mode: str, address: tuple[str, int], connections: int, size: int, *last: float
) -> subprocess.Popen[str]:
    """Run the generator in ``mode`` with its pipes open; ``last``: seed or timeout (and rate)."""
    host, port = address
    return subprocess.Popen(
        [str(build()), mode, host, str(port), str(connections), str(size), *map(str, last)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


class LoadProcess:
    """One ``loadgen load`` process: connect, then one measurement window."""

    def __init__(self, address: tuple[str, int], connections: int, size: int, seed: int) -> None:
        self.proc = _start("load", address, connections, size, seed)

    def ready(self) -> int:
        """Wait until connected; the number of connections that failed to open."""
        return int(self._expect("ready")[0])

    def run(self, window_start: float, window_end: float) -> None:
        """Start the closed loop now, counting what completes in the window."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{window_start!r} {window_end!r}\n")
        self.proc.stdin.flush()

    def result(self) -> WorkerResult:
        """Wait for the window to end and return what the process saw."""
        requests, nbytes, errors, mismatches, cpu = self._expect("done")
        error = " ".join(self._expect("error"))
        histogram = Histogram()
        for pair in self._expect("hist"):
            index, count = pair.split(":")
            histogram.counts[int(index)] = int(count)
        unserved, longest, fewest, most = self._expect("fair")
        self._finish()
        return WorkerResult(
            requests=int(requests),
            bytes=int(nbytes),
            errors=int(errors),
            mismatches=int(mismatches),
            cpu_seconds=float(cpu),
            first_error="" if error == "-" else error,
            histogram=histogram,
            unserved=int(unserved),
            longest_wait=float(longest),
            fewest_per_connection=int(fewest),
            most_per_connection=int(most),
        )

    def _finish(self) -> None:
        # With 10,000 connections and a gigabyte in flight the kernel may take
        # a while to tear the process's sockets down: its figures are in.
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _expect(self, tag: str) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:  # it died (killed, or stopped by Ctrl-C with the rest of its group)
            code = self.proc.wait()
            raise RuntimeError(f"C load generator ended (exit code {code}) before {tag!r}")
        word, *values = line.split()
        if word != tag:
            self.proc.kill()
            raise RuntimeError(f"C load generator said {line.strip()!r}, expected {tag!r}")
        return values


class WebSocketLoad(LoadProcess):
    """``loadgen ws``: the same closed loop, each message one masked binary WebSocket frame."""

    def __init__(self, address: tuple[str, int], connections: int, size: int, seed: int) -> None:
        self.proc = _start("ws", address, connections, size, seed)


class OpenLoad(LoadProcess):
    """``loadgen open``: requests on a schedule, ``rate`` per second over all connections.

    Latency runs from each request's scheduled time (coordinated omission
    corrected); :attr:`scheduled`, :attr:`completed` and :attr:`late` (not
    even queued: the server was hopelessly behind) are set by :meth:`result`.
    """

    def __init__(
        self, address: tuple[str, int], connections: int, size: int, seed: int, rate: float
    ) -> None:
        self.proc = _start("open", address, connections, size, seed, rate)
        self.scheduled = self.completed = self.late = 0

    def _expect(self, tag: str) -> list[str]:
        values = super()._expect(tag)
        if tag == "fair":  # the open loop's own line follows the fairness line
            scheduled, completed, late = super()._expect("open")
            self.scheduled, self.completed, self.late = int(scheduled), int(completed), int(late)
        return values


@dataclass(frozen=True)
class StormResult:
    """Connections opened back to back, each sending one message."""

    ok: int
    failed: int
    connect_seconds: float  # to call connect() for all of them
    first_echo_p50: float  # seconds from a connection's connect() to its first full echo
    first_echo_p99: float
    first_echo_max: float
    first_error: str


class Storm:
    """``loadgen storm``: open ``connections`` at once, echo one message each, then hold them.

    The connections stay open (idle) until :meth:`close`, so a caller can
    measure what idle connections cost the server.
    """

    def __init__(
        self, address: tuple[str, int], connections: int, size: int = 64, timeout: float = 30.0
    ) -> None:
        self.proc = _start("storm", address, connections, size, timeout)
        assert self.proc.stdout is not None
        fields = self.proc.stdout.readline().split()
        error = self.proc.stdout.readline().strip().split(maxsplit=1)
        holding = self.proc.stdout.readline().strip()
        if not fields or fields[0] != "storm" or holding != "holding":
            self.close()
            raise RuntimeError(f"C load generator failed the storm: {fields}")
        ok, failed = int(fields[1]), int(fields[2])
        p50, p99, worst = (float(value) for value in fields[4:7])
        self.result = StormResult(
            ok, failed, float(fields[3]), p50, p99, worst, error[1] if error[1:] != ["-"] else ""
        )

    def close(self) -> None:
        """Close every connection and end the process."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("close\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Storm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class BusyStormResult:
    """Connections opened back to back, each echoing in a closed loop once connected."""

    served: int  # connections with at least one echo
    unserved: int  # connections never echoed before the end
    connect_seconds: float  # to call connect() for all of them
    first_echo_p50: float  # seconds from connect() to the first echo (unserved: to the end)
    first_echo_p99: float
    first_echo_max: float
    late: int  # connections not echoed within the storm's first second
    requests: int  # echoes completed by all of them
    errors: int  # connections that failed before a first echo (connect, reset)
    mismatches: int  # replies that differed from what was sent
    first_error: str


def busy_storm(
    address: tuple[str, int], connections: int, size: int = 64, seconds: float = 2.0
) -> BusyStormResult:
    """``loadgen busy``: a storm of connections that each echo from the moment they connect."""
    proc = _start("busy", address, connections, size, seconds)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("C load generator did not finish the busy storm") from None
    lines = out.splitlines()
    fields = lines[0].split() if lines else []
    if len(fields) != 10 or fields[0] != "busy":
        raise RuntimeError(f"C load generator failed the busy storm: {out.strip()[-300:]!r}")
    error = lines[1].split(maxsplit=1)[1:] if len(lines) > 1 else []
    served, unserved = int(fields[1]), int(fields[2])
    return BusyStormResult(
        served,
        unserved,
        float(fields[3]),
        float(fields[4]),
        float(fields[5]),
        float(fields[6]),
        int(fields[7]),
        int(fields[8]),
        connections - served - unserved,
        int(fields[9]),
        error[0] if error and error[0] != "-" else "",
    )
