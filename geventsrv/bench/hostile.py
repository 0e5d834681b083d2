"""``python -m geventsrv.bench hostile``: does one hostile address cost anyone else?

Two attacks from one loopback address (127.0.0.2) while a well-behaved client
at another (127.0.0.3) connects, sends one byte and times the echo, every
20 ms:

* **hold**: the attacker opens ``--max-conns`` connections and keeps them idle;
* **storm**: the attacker makes ``--attempts`` connection attempts (connect,
  close) as fast as ``--stormers`` processes can (default 1: on a small
  machine more attacker processes than cores measure the scheduler, not
  the server).

Printed: the victim's connect-to-echo time (median, 99th percentile, worst)
and how many of its tries got no echo within ``--patience``. Server flags
after ``--`` are passed to geventsrv, so the same command measures any
setting. Loopback only; every loop is bounded in time and count.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline
from geventsrv.bench import machine
from geventsrv.testing.process import ServerProcess

ATTACKER, VICTIM = "127.0.0.2", "127.0.0.3"
#: Linux: choose the source port at connect(), not bind(), so one source
#: address can open as many connections as there are (port, destination) pairs.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def client_socket(source: str, timeout: float) -> socket.socket:
    """A TCP socket bound to ``source`` (its port chosen at connect), with a timeout."""
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((source, 0))
    return sock


def victim_tries(
    address: tuple[str, int], until: float, patience: float, interval: float = 0.02
) -> list[float | None]:
    """Connect-to-echo seconds of each try from :data:`VICTIM`; ``None``: no echo in time."""
    times: list[float | None] = []
    while time.monotonic() < until and len(times) < 10_000:
        started = time.monotonic()
        try:
            with client_socket(VICTIM, patience) as sock:
                sock.connect(address)
                sock.sendall(b"!")
                echoed = sock.recv(1) == b"!"
            times.append(time.monotonic() - started if echoed else None)
        except OSError:
            times.append(None)
        time.sleep(interval)
    return times


def _hold(address: tuple[str, int], count: int, held: list[socket.socket]) -> None:
    for _ in range(count):
        sock = client_socket(ATTACKER, 5)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        held.append(sock)


def _storm(address: tuple[str, int], attempts: int, until: float) -> None:
    for _ in range(attempts):
        if time.monotonic() > until:
            return
        with client_socket(ATTACKER, 2) as sock, contextlib.suppress(OSError):
            sock.connect(address)


def summarize(tries: list[float | None]) -> dict[str, Any]:
    served = sorted(t for t in tries if t is not None)
    return {
        "tries": len(tries),
        "unserved": len(tries) - len(served),
        "p50_ms": statistics.median(served) * 1000 if served else None,
        "p99_ms": served[int(0.99 * (len(served) - 1))] * 1000 if served else None,
        "worst_ms": served[-1] * 1000 if served else None,
    }


def run_scenario(
    scenario: str,
    flags: Sequence[str],
    max_conns: int,
    attempts: int,
    patience: float,
    code: Path | None = None,
    stormers: int = 1,
) -> dict[str, Any]:
    # python -m puts the working directory first on sys.path: run from ``code``
    # to serve the package found there.
    server = ServerProcess(
        "--port", "0", "--max-conns", str(max_conns), *flags, cwd=code
    ).wait_listening()
    held: list[socket.socket] = []
    tries: list[float | None] = []
    elapsed = 0.0
    try:
        address = server.address
        if scenario == "hold":
            started = time.monotonic()
            _hold(address, max_conns, held)
            elapsed = time.monotonic() - started
            time.sleep(0.2)
            tries = victim_tries(address, time.monotonic() + 3.0, patience)
        else:
            until = time.monotonic() + 60
            context = multiprocessing.get_context("spawn")
            processes = [
                context.Process(target=_storm, args=(address, attempts // stormers, until))
                for _ in range(stormers)
            ]
            for process in processes:
                process.start()
            # The victim tries for as long as the storm lasts.
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    tries.extend(victim_tries(address, time.monotonic() + 0.5, patience))

            watcher = threading.Thread(target=watch)
            watcher.start()
            for process in processes:
                process.join(70)
            elapsed = time.monotonic() - (until - 60)
            done.set()
            watcher.join(10)
    finally:
        for sock in held:
            sock.close()
        server.stop()
    return {
        "scenario": scenario,
        "held": len(held),
        "seconds": round(elapsed, 2),
        **summarize(tries),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = cmdline.Parser(
        prog="python -m geventsrv.bench hostile",
        description="A second client's connect-to-echo time while one address attacks.",
    )
    parser.add_argument("--max-conns", type=cmdline.positive_int, default=10_000, help="(10000)")
    parser.add_argument(
        "--attempts", type=cmdline.positive_int, default=20_000, help="storm size (20000)"
    )
    parser.add_argument(
        "--patience", type=cmdline.positive_number, default=2.0, help="seconds per try (2)"
    )
    parser.add_argument(
        "--stormers", type=cmdline.positive_int, default=1, help="storm processes (1)"
    )
    parser.add_argument("--code", type=Path, help="run the geventsrv package found here")
    parser.add_argument(
        "--out", type=Path, default=Path("reports/hostile.json"), help="results, JSON (%(default)s)"
    )
    parser.add_argument("flags", nargs="*", help="geventsrv flags, after --")
    args = parser.parse_args(argv)
    results = []
    for scenario in ("hold", "storm"):
        result = run_scenario(
            scenario,
            args.flags,
            args.max_conns,
            args.attempts,
            args.patience,
            args.code,
            args.stormers,
        )
        results.append(result)
        print(describe(result), flush=True)
    record = {"machine": machine.fingerprint(), "flags": args.flags, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def describe(result: dict[str, Any]) -> str:
    """One line per scenario: what the attacker did and what the bystander saw."""
    what = (
        f"attacker held {result['held']:,} connections"
        if result["scenario"] == "hold"
        else f"attacker stormed for {result['seconds']:g} s"
    )
    if result["p50_ms"] is None:
        seen = "never served"
    else:
        seen = (
            f"echo in {result['p50_ms']:.1f} ms median, {result['p99_ms']:.1f} ms p99, "
            f"{result['worst_ms']:.1f} ms worst"
        )
    return (
        f"{result['scenario']:5}: {what}; the bystander's {result['tries']:,} tries: {seen}, "
        f"{result['unserved']:,} unserved"
    )
