"""``python -m geventsrv.bench soak``: hours of trouble in minutes, and a leak check.

Runs one geventsrv process under mixed load and faults for a bounded time:

* echo load: closed-loop clients (the lab's generator) in 20-second waves, so
  connections are opened and closed all along; every reply is checked;
* faults, one after another from a thread of their own: clients that reset
  mid-echo, idle clients the idle timeout must reclaim, clients that send
  megabytes and never read, short echo exchanges and half-closes whose bytes
  are checked.

Every ``--sample`` seconds it records the server's RSS and open descriptors
(from /proc) and its live greenlets and connections (from the SIGUSR1 status
line). At the end it stops the load, waits for the idle timeout to reclaim
what is left, and takes a last sample. It fails (exit 1) if any byte came back
wrong or missing, if RSS, descriptors or greenlets trend upward after the
warm-up, or if the server did not return to its starting descriptors and
greenlets. Writes ``soak.csv``, ``soak.png`` and ``soak.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geventsrv import cmdline
from geventsrv.bench import cload
from geventsrv.bench.load import CLIENTS, choose_client, start_load
from geventsrv.testing.process import ServerProcess

PROG = "python -m geventsrv.bench soak"
DESCRIPTION = (
    "Run one geventsrv under mixed echo load and faults for a bounded time; fail on any "
    "wrong or lost byte, an upward trend of RSS, descriptors or greenlets, or a server "
    "that does not return to its starting descriptors and greenlets."
)
IDLE_TIMEOUT = 2.0
WAVE_SECONDS = 20.0
#: Upward drift allowed between the first and last third after warm-up.
TREND_LIMITS = {"rss_mib": (0.10, 4.0), "fds": (0.10, 32), "greenlets": (0.10, 32)}


@dataclass
class Tally:
    """What the load and the fault clients saw; shared by their threads."""

    requests: int = 0
    load_errors: int = 0
    mismatches: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # checked exchanges that came back wrong
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, name: str) -> None:
        with self.lock:
            self.faults[name] = self.faults.get(name, 0) + 1


def build_parser() -> argparse.ArgumentParser:
    parser = cmdline.Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument(
        "--minutes", type=cmdline.positive_number, default=10.0, help="how long (default: 10)"
    )
    parser.add_argument(
        "--connections",
        type=cmdline.positive_int,
        default=200,
        help="echo load connections (default: 200)",
    )
    parser.add_argument(
        "--sample", type=cmdline.positive_number, default=2.0, help="seconds between samples"
    )
    parser.add_argument(
        "--warmup",
        type=cmdline.seconds,
        default=0.2,
        help="fraction of the run ignored by the trend check (default: 0.2)",
    )
    parser.add_argument("--client", choices=CLIENTS, default="auto")
    parser.add_argument("--out", type=Path, default=Path("reports/soak"), help="output directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.minutes > 0 or args.connections < 1 or not args.sample > 0:
        parser.error("--minutes, --connections and --sample must be positive")
    try:
        client = choose_client(args.client)
    except cload.BuildError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    # Every client is 127.0.0.1: no per-client limit, the soak loads one address.
    server = ServerProcess(
        "--port", "0", "--idle-timeout", str(IDLE_TIMEOUT), "--max-conns-per-client", "0"
    ).wait_listening()
    tally = Tally()
    stop = threading.Event()
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    try:
        time.sleep(0.3)
        baseline = _sample(server, started)
        threads = [
            threading.Thread(target=_echo_load, args=(server, args, client, tally, stop, deadline)),
            threading.Thread(target=_faults, args=(server.port, tally, stop, deadline)),
        ]
        for thread in threads:
            thread.start()
        while time.monotonic() < deadline:
            samples.append(_sample(server, started))
            print(_progress(samples[-1], tally), file=sys.stderr, flush=True)
            time.sleep(max(0.0, min(args.sample, deadline - time.monotonic())))
        stop.set()
        for thread in threads:
            thread.join(WAVE_SECONDS + 60)
        time.sleep(IDLE_TIMEOUT * 1.25 + 1)  # let the idle timeout take what is left
        final = _sample(server, started)
    finally:
        stop.set()
        server.stop()
    exit_code = server.proc.returncode
    verdicts = _verdicts(samples, baseline, final, tally, args.warmup, exit_code)
    paths = _write(args.out, samples, baseline, final, tally, verdicts, args, client)
    for verdict in verdicts:
        print(verdict, file=sys.stderr)
    print("wrote " + ", ".join(str(path) for path in paths), file=sys.stderr)
    return 1 if any(verdict.startswith("FAIL") for verdict in verdicts) else 0


def _sample(server: ServerProcess, started: float) -> dict[str, float]:
    """RSS from /proc; descriptors, greenlets and connections from the status line."""
    status = server.status()
    return {
        "elapsed_s": round(time.monotonic() - started, 2),
        "rss_mib": round(server.rss_bytes() / 2**20, 2),
        "fds": status["fds"],
        "greenlets": status["greenlets"],
        "connections": status["connections"],
    }


def _progress(sample: dict[str, float], tally: Tally) -> str:
    return (
        f"{sample['elapsed_s']:7.0f} s  RSS {sample['rss_mib']:6.1f} MiB  fds {sample['fds']:5.0f}"
        f"  greenlets {sample['greenlets']:5.0f}  requests {tally.requests:,}"
    )


def _echo_load(
    server: ServerProcess,
    args: argparse.Namespace,
    client: str,
    tally: Tally,
    stop: threading.Event,
    deadline: float,
) -> None:
    """Closed-loop 1 KiB echo load in waves of fresh connections until ``deadline``.

    A load generator that dies is a finding, recorded in the tally, unless the
    soak is stopping (Ctrl-C reaches the generator too).
    """
    seed = 0
    while (left := deadline - time.monotonic()) > 1 and not stop.is_set():
        seed += 1
        try:
            load = start_load(client, server.address, args.connections, 1024, seed)
            connect_errors = load.ready()
            start = time.monotonic() + 0.3
            load.run(start, start + min(WAVE_SECONDS, left))
            result = load.result()
        except (RuntimeError, OSError) as exc:
            if not stop.is_set():
                with tally.lock:
                    tally.lost.append(f"echo load: {exc}")
            return
        with tally.lock:
            tally.requests += result.requests
            tally.load_errors += result.errors + connect_errors
            tally.mismatches += result.mismatches
            if result.first_error and len(tally.lost) < 20:
                tally.lost.append(f"echo load: {result.first_error}")


def _faults(port: int, tally: Tally, stop: threading.Event, deadline: float) -> None:
    """One fault after another, at random, until told to stop."""
    rng = random.Random(7)
    held: list[tuple[float, socket.socket]] = []
    kinds = [_reset_mid_echo, _idle_clients, _non_reader, _checked_echo, _half_close]
    while not stop.is_set() and time.monotonic() < deadline:
        fault = rng.choice(kinds)
        try:
            fault(port, rng, tally, held)
        except OSError as exc:  # a fault client's own trouble is not the server's
            tally.fault(f"client error ({type(exc).__name__})")
        now = time.monotonic()
        for since, sock in [entry for entry in held if now - entry[0] > IDLE_TIMEOUT * 2]:
            sock.close()
            held.remove((since, sock))
        stop.wait(rng.uniform(0.05, 0.3))
    for _, sock in held:
        sock.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _reset_mid_echo(port: int, rng: random.Random, tally: Tally, held: list[Any]) -> None:
    with _connect(port) as sock:
        sock.sendall(rng.randbytes(rng.randint(1, 300_000)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tally.fault("reset mid-echo")


def _idle_clients(port: int, rng: random.Random, tally: Tally, held: list[Any]) -> None:
    now = time.monotonic()
    held.extend((now, _connect(port)) for _ in range(20))  # the idle timeout reclaims them
    tally.fault("20 idle clients")


def _non_reader(port: int, rng: random.Random, tally: Tally, held: list[Any]) -> None:
    sock = _connect(port)
    sock.settimeout(0.5)
    with contextlib.suppress(TimeoutError):
        for _ in range(16):
            sock.sendall(rng.randbytes(256 * 1024))  # 4 MiB offered, nothing read
    held.append((time.monotonic(), sock))
    tally.fault("non-reader")


def _checked_echo(port: int, rng: random.Random, tally: Tally, held: list[Any]) -> None:
    payload = rng.randbytes(rng.randint(1, 200_000))
    with _connect(port) as sock:
        sock.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    if got != payload:
        tally.lost.append(f"checked echo: {len(got)} of {len(payload)} bytes back, or wrong")
    tally.fault("checked echo")


def _half_close(port: int, rng: random.Random, tally: Tally, held: list[Any]) -> None:
    payload = rng.randbytes(rng.randint(0, 100_000))
    with _connect(port) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
    if got != payload:
        tally.lost.append(f"half-close: {len(got)} of {len(payload)} bytes back, or wrong")
    tally.fault("half-close")


def trend(values: Sequence[float]) -> tuple[float, float]:
    """Medians of the first and last thirds of ``values``: robust to load's ups and downs."""
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]), statistics.median(values[-third:])


def _verdicts(
    samples: list[dict[str, float]],
    baseline: Mapping[str, float],
    final: Mapping[str, float],
    tally: Tally,
    warmup: float,
    exit_code: int | None,
) -> list[str]:
    verdicts = []
    steady = samples[int(len(samples) * warmup) :]
    for key, (fraction, floor) in TREND_LIMITS.items():
        if len(steady) < 6:
            verdicts.append(f"FAIL: too few samples after warm-up to judge {key}")
            continue
        first, last = trend([sample[key] for sample in steady])
        allowed = max(first * fraction, floor)
        ok = last - first <= allowed
        verdicts.append(
            f"{'ok' if ok else 'FAIL'}: {key} {first:g} -> {last:g} after warm-up "
            f"(medians of the first and last thirds; allowed +{allowed:g})"
        )
    for key in ("fds", "greenlets"):
        ok = final[key] <= baseline[key]
        verdicts.append(
            f"{'ok' if ok else 'FAIL'}: {key} at the end {final[key]:g}, at the start "
            f"{baseline[key]:g}"
        )
    ok = not tally.lost and not tally.mismatches and not tally.load_errors
    verdicts.append(
        f"{'ok' if ok else 'FAIL'}: {tally.requests:,} load requests, {tally.mismatches} wrong, "
        f"{tally.load_errors} errors; {sum(tally.faults.values()):,} fault clients, "
        f"{len(tally.lost)} checked exchanges lost bytes"
    )
    verdicts.extend(f"FAIL: {lost}" for lost in tally.lost[:5])
    verdicts.append(f"{'ok' if exit_code == 0 else 'FAIL'}: server exit code {exit_code}")
    return verdicts


def _write(
    out: Path,
    samples: list[dict[str, float]],
    baseline: dict[str, float],
    final: dict[str, float],
    tally: Tally,
    verdicts: list[str],
    args: argparse.Namespace,
    client: str,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = out / "soak.csv"
    with table.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(baseline))
        writer.writeheader()
        writer.writerows([baseline, *samples, final])
    summary = out / "soak.json"
    summary.write_text(
        json.dumps(
            {
                "minutes": args.minutes,
                "connections": args.connections,
                "client": client,
                "idle_timeout": IDLE_TIMEOUT,
                "requests": tally.requests,
                "faults": tally.faults,
                "baseline": baseline,
                "final": final,
                "verdicts": verdicts,
            },
            indent=2,
        )
        + "\n"
    )
    return [table, summary, _plot(out / "soak.png", samples, args.warmup)]


def _plot(path: Path, samples: list[dict[str, float]], warmup: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [sample["elapsed_s"] / 60 for sample in samples]
    figure, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 6.5))
    series = [("rss_mib", "RSS (MiB)"), ("fds", "open descriptors"), ("greenlets", "greenlets")]
    for axis, (key, label) in zip(axes, series, strict=True):
        values = [sample[key] for sample in samples]
        axis.plot(minutes, values, linewidth=1)
        axis.set_ylabel(label)
        if key == "rss_mib" and values:
            # Zoomed on the data: a drift of a few percent is what the check is about.
            low, high = min(values), max(values)
            margin = max((high - low) * 0.2, 0.5)
            axis.set_ylim(low - margin, high + margin)
        else:
            axis.set_ylim(bottom=0)
        if minutes:
            axis.axvspan(0, minutes[-1] * warmup, color="0.9", label="warm-up")
        axis.grid(alpha=0.3)
    axes[0].set_title("geventsrv soak: echo load and faults")
    axes[0].legend(loc="lower right")
    axes[-1].set_xlabel("minutes")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
