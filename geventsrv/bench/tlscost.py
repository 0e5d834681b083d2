"""``python -m geventsrv.bench tls``: what TLS costs geventsrv, measured behind a real TLS client.

The lab's load generators speak plain TCP, so TLS is spoken by HAProxy in
front, as in a deployment that encrypts between the balancer and its
backends: the load goes to HAProxy, which opens its connections to geventsrv
either in clear or over TLS (``ssl verify none``). Both variants pass through
the same HAProxy, so the comparison isolates the backend's TLS; rounds
alternate plain and TLS, and the figures are medians. The figure that
matters is geventsrv's own CPU per request (its process alone, not HAProxy's);
requests/s are the whole chain's on this machine and are shown beside it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geventsrv import cmdline
from geventsrv.bench import machine
from geventsrv.bench.haproxy import Backend, HAProxy, HAProxyError
from geventsrv.bench.lab import warm_up
from geventsrv.bench.load import choose_client, start_load
from geventsrv.procstats import cpu_seconds
from geventsrv.testing.process import ServerProcess

VARIANTS = ("plain", "tls")


def make_certificate(directory: Path) -> Path:
    """A self-signed P-256 certificate and key in one PEM file, made by the openssl command."""
    pem = directory / "server.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
    command += ["ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost", "-days", "1"]
    command += ["-keyout", str(pem), "-out", str(directory / "cert.pem")]
    try:
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HAProxyError(f"cannot make a test certificate with openssl: {exc}") from None
    pem.write_text(pem.read_text() + (directory / "cert.pem").read_text())
    return pem


def measure_round(
    variant: str, pem: Path, directory: Path, size: int, connections: int, duration: float
) -> dict[str, Any]:
    """One variant, one window: requests/s and CPU per request of geventsrv and HAProxy."""
    flags = ("--tls-cert", str(pem)) if variant == "tls" else ()
    server = ServerProcess("--port", "0", *flags).wait_listening()
    try:
        options = "ssl verify none" if variant == "tls" else ""
        with HAProxy(directory, [Backend(server.address, options)]) as proxy:
            warm_up(proxy.front, size)
            load = start_load(choose_client("auto"), proxy.front, connections, size)
            errors = load.ready()
            window_start = time.monotonic() + 1.0  # a second to reach a steady state
            window_end = window_start + duration
            load.run(window_start, window_end)
            time.sleep(max(0.0, window_start - time.monotonic()))
            server_cpu, proxy_cpu = server.cpu_seconds(), cpu_seconds(proxy.pid)
            time.sleep(max(0.0, window_end - time.monotonic()))
            server_cpu = server.cpu_seconds() - server_cpu
            proxy_cpu = cpu_seconds(proxy.pid) - proxy_cpu
            result = load.result()
    finally:
        server.stop()
    requests = result.requests
    return {
        "variant": variant,
        "requests_per_s": requests / duration,
        "server_cpu_us_per_request": server_cpu / requests * 1e6 if requests else None,
        "haproxy_cpu_us_per_request": proxy_cpu / requests * 1e6 if requests else None,
        "errors": errors + result.errors,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Medians per variant, and TLS over plain as ratios."""
    keys = ("requests_per_s", "server_cpu_us_per_request", "haproxy_cpu_us_per_request")
    medians = {
        variant: {
            key: statistics.median(r[key] for r in runs if r["variant"] == variant and r[key])
            for key in keys
        }
        for variant in VARIANTS
    }
    medians["tls/plain"] = {key: medians["tls"][key] / medians["plain"][key] for key in keys}
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = cmdline.Parser(
        prog="python -m geventsrv.bench tls",
        description="geventsrv's CPU per request with and without TLS, HAProxy as the client.",
    )
    parser.add_argument(
        "--size", type=cmdline.positive_int, default=1024, help="bytes per request (1024)"
    )
    parser.add_argument("--connections", type=cmdline.positive_int, default=100, help="(100)")
    parser.add_argument(
        "--duration", type=cmdline.positive_number, default=5.0, help="seconds per window (5)"
    )
    parser.add_argument(
        "--rounds", type=cmdline.positive_int, default=5, help="plain/TLS pairs (5)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports/tls.json"), help="runs and medians (%(default)s)"
    )
    args = parser.parse_args(argv)
    runs = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch)
            pem = make_certificate(directory)
            for number in range(args.rounds):
                for variant in VARIANTS if number % 2 == 0 else VARIANTS[::-1]:
                    run = measure_round(
                        variant, pem, directory, args.size, args.connections, args.duration
                    )
                    runs.append(run)
                    print(
                        f"round {number + 1} {variant:5}: {run['requests_per_s']:9.0f} req/s, "
                        f"geventsrv {run['server_cpu_us_per_request']:5.1f} us/request, "
                        f"haproxy {run['haproxy_cpu_us_per_request']:5.1f}, "
                        f"errors {run['errors']}",
                        flush=True,
                    )
    except HAProxyError as exc:
        print(f"geventsrv.bench tls: error: {exc}", file=sys.stderr)
        return 2
    medians = summarize(runs)
    for variant, figures in medians.items():
        print(
            f"median {variant:9}: "
            + ", ".join(f"{key} {value:.3g}" for key, value in figures.items())
        )
    record = {
        "machine": machine.fingerprint(),
        "settings": vars(args) | {"out": str(args.out)},
        "runs": runs,
        "medians": medians,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
