"""``python -m geventsrv.bench http3``: the HTTP mode's HTTP/3 against hypercorn's.

Both serve HTTP/3 with aioquic underneath; what differs is what drives it:
geventsrv's greenlets (one loop on the UDP socket, a greenlet per request) or
hypercorn's asyncio (with uvloop). Each is one process, with a certificate made
for the run. Two workloads, as the HTTP lab's (:mod:`geventsrv.bench.httpbench`),
round by round, servers interleaved and their order rotated each round, each
after the same warm-up:

* ``small``: ``GET /?bytes=40``: what the server costs per request;
* ``reflect``: ``GET /``, answered with the reflection document, which both
  build with the same functions.

The load is libcurl's HTTP/3 (ngtcp2) through curl_cffi, one process
(:mod:`geventsrv.bench.h3load`), a request in flight on each connection. CPU
per request is the server's own, from ``/proc``. Then ``/echo``'s throughput
on geventsrv alone (hypercorn's application has no echo): one upload of
``--transfer`` bytes echoed back, one download as large, with datagrams as
large as each connection's path is probed to carry and with QUIC's 1,200
bytes (``--http3-max-datagram 1200``); libcurl's own datagrams are 1,452
bytes at most, so ``/echo`` once more with aioquic's client sending the
largest the server does. Every answer is checked first; errors
make the run exit 1.

Two more measurements of geventsrv alone, each asked for by its option:

* ``--flood N``: N genuine client Initial packets (aioquic's client state
  machine, never answered) from one address, 0.5 ms apart, against the server
  as it starts by default, with ``--max-conns-per-client 50``, and with
  ``--http3-retry``: the server's CPU per Initial, and its memory after;
* ``--beside-tcp SECONDS``: a client sending one request at a time on a
  keep-alive HTTP/1.1 connection (a plain ``--listen`` beside the HTTP/3 port),
  alone and then beside 100 HTTP/3 connections of load: its latencies, which
  say whether QUIC's work starves the TCP side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
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
from geventsrv.bench.httpbench import (
    APPS,
    PY,
    WORKLOADS,
    BenchError,
    HttpServer,
    Running,
    add_window_arguments,
    fmt,
    interleaved,
    medians,
    publish,
    window,
)
from geventsrv.http.patterns import PATTERN
from geventsrv.quicpath import MAX_SIZE

PROG = "python -m geventsrv.bench http3"
LOAD = (PY, "-m", "geventsrv.bench.h3load")
#: Seconds a server's HTTP/3 may take to answer once its TCP port does.
QUIC_START = 15.0
#: What ``--flood`` is sent to: the server as it starts by default, then bounded two ways.
FLOODED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default", ()),
    ("--max-conns-per-client 50", ("--max-conns-per-client", "50")),
    ("--http3-retry", ("--http3-retry",)),
)


def servers(cert: str, key: str, transfer: int) -> tuple[HttpServer, ...]:
    """geventsrv and hypercorn, each serving HTTP/3 on ``{port}`` with ``cert``."""
    return (
        HttpServer("geventsrv", (PY, "-m", "geventsrv", "--mode", "http", "--port", "{port}",
                                 "--tls-cert", cert, "--tls-key", key, "--http3",
                                 "--max-conns-per-client", "0", "--http-max-body",
                                 str(max(transfer, 1 << 20)), "--log-level", "warning"),
                   protocols=("h3",)),
        HttpServer("hypercorn-uvloop",
                   (PY, "-m", "hypercorn", "--worker-class", "uvloop", "-b", "127.0.0.1:{port}",
                    "--quic-bind", "127.0.0.1:{port}", "--certfile", cert, "--keyfile", key,
                    "--log-level", "warning", f"{APPS}:asgi"),
                   ("hypercorn", "uvloop", "aioquic"), protocols=("h3",)),
    )  # fmt: skip


def certificate(folder: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, made for the run."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "geventsrv bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def h3load(url: str, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """One run of the load process; its figures, or :class:`BenchError`."""
    result = subprocess.run([*LOAD, url, *args], capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    try:
        figures: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise BenchError(f"the HTTP/3 load failed: {result.stderr.strip()[-300:]}") from None
    return figures


def get(port: int, target: str) -> bytes:
    """One ``GET`` over HTTP/3; the body, or :class:`BenchError`."""
    from curl_cffi import CurlHttpVersion, requests

    try:
        answer = requests.get(f"https://127.0.0.1:{port}{target}", verify=False, timeout=10,
                              http_version=CurlHttpVersion.V3ONLY)  # fmt: skip
    except Exception as exc:  # curl's errors, whatever their class
        raise BenchError(f"GET {target} over HTTP/3: {exc}") from None
    if answer.status_code != 200:
        raise BenchError(f"GET {target} over HTTP/3 was answered {answer.status_code}")
    return answer.content


def check_answers(server: HttpServer, port: int) -> None:
    # A server may listen on TCP before its UDP socket is bound (hypercorn binds QUIC
    # after TCP): its first answer is waited for, at most QUIC_START seconds.
    deadline = time.monotonic() + QUIC_START
    while True:
        try:
            small = get(port, server.target("small"))
            break
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    if small != PATTERN[:40]:
        raise BenchError(f"{server.name}: the small answer was not the 40 bytes expected")
    try:
        reflection = json.loads(get(port, "/check?x=1"))
    except ValueError:
        reflection = {}
    if reflection.get("request", {}).get("query") != {"x": ["1"]}:
        raise BenchError(f"{server.name}: GET /check?x=1 was not reflected")


def measure(server: HttpServer, workload: str, connections: int, duration: float,
            warmup: float) -> dict[str, Any]:  # fmt: skip
    target = server.target(workload)
    with Running(server) as running:
        check_answers(server, running.port)
        url = f"https://127.0.0.1:{running.port}{target}"
        load = ("--connections", str(connections))
        if warmup:
            h3load(url, *load, "--seconds", str(warmup), timeout=warmup + 60)
        cpu_before = running.cpu()
        figures = h3load(url, *load, "--seconds", str(duration), timeout=duration + 60)
        cpu = running.cpu() - cpu_before
    requests = figures["requests"]
    return {
        "server": server.name, "protocol": "h3", "workload": workload,
        "connections": connections, **figures,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
    }  # fmt: skip


#: What ``/echo``'s throughput is measured with: datagrams as large as the path is probed to
#: carry (the default), and QUIC's 1,200 bytes everywhere.
DATAGRAMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("probed", ()),
    ("1200", ("--http3-max-datagram", "1200")),
)


#: The client that sends large datagrams too, against the default: aioquic's, in the largest.
LARGE_CLIENT = f"probed, aioquic's client sending {MAX_SIZE}"


def throughput(server: HttpServer, size: int, rounds: int) -> dict[str, Any]:
    """``/echo`` both ways and a download, ``size`` bytes each, with each of :data:`DATAGRAMS`
    (interleaved, one process each), then ``/echo`` with a client whose own datagrams are
    large (:data:`LARGE_CLIENT`); medians of ``rounds``. The default's figures with libcurl
    at the top level, every one under ``datagrams``."""
    variants = [HttpServer(f"{server.name} ({name})", server.command + flags, server.needs,
                           server.protocols) for name, flags in DATAGRAMS]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in DATAGRAMS}
    runs[LARGE_CLIENT] = []
    with contextlib.ExitStack() as stack:
        ports = []
        for variant in variants:
            running = stack.enter_context(Running(variant))
            check_answers(variant, running.port)
            ports.append(running.port)
        for _ in range(rounds):
            for (name, _), port in zip(DATAGRAMS, ports, strict=True):
                url = f"https://127.0.0.1:{port}/echo"
                runs[name].append(h3load(url, "--transfer", str(size), timeout=300))
            runs[LARGE_CLIENT].append(h3load(
                f"https://127.0.0.1:{ports[0]}/echo", "--transfer", str(size), "--client",
                "aioquic", "--datagram", str(MAX_SIZE), timeout=300))  # fmt: skip
    figures = {
        name: {
            "echo_mb_per_s": statistics.median(run["echo_mb_per_s"] for run in each),
            "download_mb_per_s": statistics.median(run["download_mb_per_s"] for run in each)
            if "download_mb_per_s" in each[0]
            else None,
            "errors": sum(run["errors"] for run in each),
        }
        for name, each in runs.items()
    }
    return {**figures[DATAGRAMS[0][0]], "datagrams": figures, "size": size, "rounds": rounds}


def flood(cert: str, key: str, count: int) -> list[dict[str, Any]]:
    """The Initial flood against three configurations; CPU per Initial and memory each."""
    from geventsrv.procstats import rss_bytes

    results = []
    for name, flags in FLOODED:
        base = servers(cert, key, 0)[0]
        server = HttpServer("geventsrv", (*base.command, *flags), protocols=("h3",))
        with Running(server) as running, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            address = ("127.0.0.1", running.port)
            packets = [_client_initial(address) for _ in range(count)]
            before = running.cpu()
            for packet in packets:
                sock.sendto(packet, address)
                time.sleep(0.0005)
            time.sleep(1.0)
            cpu = running.cpu() - before
            rss = rss_bytes(running.process.pid)
        results.append({"server": name, "initials": count,
                        "cpu_us_per_initial": cpu / count * 1e6, "rss_mb": rss / 1e6})  # fmt: skip
    return results


def _client_initial(address: tuple[str, int]) -> bytes:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="x")
    client = QuicConnection(configuration=configuration)
    client.connect(address, now=time.monotonic())
    return client.datagrams_to_send(now=time.monotonic())[0][0]


def beside_tcp(cert: str, key: str, seconds: float) -> dict[str, Any]:
    """One TCP client's latencies alone, then beside 100 connections of HTTP/3 load."""
    from geventsrv.bench.haproxy import free_port

    plain = free_port()
    base = servers(cert, key, 0)[0]
    server = HttpServer("geventsrv", (*base.command, "--listen", f"127.0.0.1:{plain}"),
                        protocols=("h3",))  # fmt: skip
    with Running(server) as running:
        alone = _probe(plain, seconds)
        url = f"https://127.0.0.1:{running.port}/?bytes=40"
        load = subprocess.Popen(
            [*LOAD, url, "--connections", "100", "--seconds", str(seconds + 3)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)  # the load's connections are up
        beside = _probe(plain, seconds)
        quic = json.loads(load.communicate(timeout=seconds + 60)[0])
    return {"alone": alone, "beside": beside, "quic_requests_per_s": quic["requests_per_s"]}


def _probe(port: int, seconds: float) -> dict[str, Any]:
    """Requests one at a time (5 ms apart) on a keep-alive HTTP/1.1 connection."""
    latencies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            began = time.monotonic()
            sock.sendall(b"GET /?bytes=40 HTTP/1.1\r\nHost: bench\r\n\r\n")
            data = b""
            while True:
                piece = sock.recv(65536)
                if not piece:
                    raise BenchError("the TCP probe's connection closed")
                data += piece
                _, mark, body = data.partition(b"\r\n\r\n")
                if mark and len(body) >= 40:
                    break
            latencies.append(time.monotonic() - began)
            time.sleep(0.005)
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "median_ms": statistics.median(latencies) * 1e3,
            "p99_ms": cuts[98] * 1e3, "max_ms": max(latencies) * 1e3}  # fmt: skip


def markdown(rows: list[dict[str, Any]], transfer: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Machine: {machine.describe(meta['machine'])}.", f"Command: `{meta['command']}`.", ""]
    for workload in dict.fromkeys(row["workload"] for row in rows):
        lines += [
            f"**{workload}** over HTTP/3 (`GET {WORKLOADS[workload]}`, {meta['connections']} "
            f"connections, one request in flight on each, curl_cffi; medians of "
            f"{meta['rounds']} round(s)):",
            "",
            "| server | requests/s | CPU µs per request | p99 ms "
            "| geventsrv's requests/s vs it | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in (r for r in rows if r["workload"] == workload):
            lines.append(
                f"| {row['server']} | {row['requests_per_s']:,.0f} | "
                f"{fmt(row['cpu_us_per_request'], 1)} | {fmt(row['p99_ms'], 2)} | "
                f"{fmt(row['geventsrv_vs_this'], 2)}x | {row['errors']} |"
            )
        lines.append("")
    if transfer:
        lines += [
            f"**/echo** on geventsrv, {transfer['size'] >> 20} MiB, medians of "
            f"{transfer['rounds']}:",
            "",
            "| datagrams | /echo, MB/s each way | download, MB/s | errors |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, figures in transfer["datagrams"].items():
            lines.append(
                f"| {name} | {figures['echo_mb_per_s']:.1f} | "
                f"{fmt(figures['download_mb_per_s'], 1)} | {figures['errors']} |"
            )
        lines.append("")
    for result in meta.get("flood", []):
        lines.append(
            f"- {result['initials']:,} Initials, {result['server']}: "
            f"{result['cpu_us_per_initial']:,.0f} µs of CPU each, {result['rss_mb']:.0f} MB after"
        )
    if beside := meta.get("beside_tcp"):
        alone, loaded = beside["alone"], beside["beside"]
        lines += ["", (
            f"TCP beside HTTP/3 load ({beside['quic_requests_per_s']:,.0f} HTTP/3 requests/s): "
            f"median {alone['median_ms']:.2f} -> {loaded['median_ms']:.2f} ms, p99 "
            f"{alone['p99_ms']:.2f} -> {loaded['p99_ms']:.2f} ms, max {alone['max_ms']:.1f} -> "
            f"{loaded['max_ms']:.1f} ms; {alone['requests']} -> {loaded['requests']} answers"
        )]  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = cmdline.Parser(
        prog=PROG,
        description="The HTTP mode's HTTP/3 against hypercorn's (both on aioquic), driven by "
        "libcurl's HTTP/3 (curl_cffi), rounds interleaved; medians of requests/s and CPU per "
        "request; then /echo's throughput. Exits 1 if an answer was wrong or the load saw "
        "errors.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per point, 1 round, 10 connections"
    )
    parser.add_argument(
        "--workloads", type=lambda t: t.split(","),
        help=f"comma-separated subset of: {', '.join(WORKLOADS)} (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--transfer", type=cmdline.positive_int, default=32 << 20, metavar="BYTES",
        help="/echo's upload and the download, in bytes (default: 32 MiB; 0 skips it)",
    )  # fmt: skip
    parser.add_argument(
        "--flood", type=cmdline.positive_int, metavar="N",
        help="also send N client Initials, never answered, to three configurations: CPU each",
    )  # fmt: skip
    parser.add_argument(
        "--beside-tcp", type=cmdline.positive_number, metavar="SECONDS",
        help="also time a TCP client alone and beside HTTP/3 load, SECONDS each",
    )  # fmt: skip
    parser.add_argument(
        "--skip-load", action="store_true",
        help="skip the two servers' request rates and /echo (with --flood or --beside-tcp)",
    )  # fmt: skip
    add_window_arguments(parser, "connections", 5, Path("reports/http"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    connections, duration, warmup, rounds = window(args, 5)
    workloads = args.workloads or list(WORKLOADS)
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload: {', '.join(unknown)}")
    try:
        import curl_cffi  # noqa: F401
    except ImportError:
        print(f"{PROG}: the load needs curl_cffi (pip install 'geventsrv[bench]')",
              file=sys.stderr)  # fmt: skip
        return 2
    folder = Path(tempfile.mkdtemp(prefix="geventsrv-h3bench-"))
    cert, key = certificate(folder)
    chosen = []
    for server in servers(cert, key, args.transfer):
        if why := server.missing():
            print(f"skipping {server.name}: {why} (pip install 'geventsrv[bench,http3]')")
            continue
        chosen.append(server)
    runs: list[dict[str, Any]] = []
    transfer: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if args.skip_load:
        rounds = 0
    try:
        runs = interleaved(
            rounds, chosen, [(workload,) for workload in workloads],
            lambda server, workload: measure(server, workload, connections, duration, warmup),
        )  # fmt: skip
        if args.transfer and rounds and chosen[0].name == "geventsrv":
            transfer = throughput(chosen[0], args.transfer, rounds)
            for name, figures in transfer["datagrams"].items():
                down = fmt(figures["download_mb_per_s"], 1)
                print(f"/echo, datagrams {name}: {figures['echo_mb_per_s']:.1f} MB/s each way, "
                      f"download {down} MB/s", flush=True)  # fmt: skip
        if args.flood:
            extra["flood"] = flood(cert, key, args.flood)
        if args.beside_tcp:
            extra["beside_tcp"] = beside_tcp(cert, key, args.beside_tcp)
    except BenchError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    rows = medians(runs)
    meta = {
        **extra,
        "machine": machine.fingerprint(),
        "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
        "connections": connections, "duration": duration, "warmup": warmup, "rounds": rounds,
        "load": "libcurl HTTP/3 (curl_cffi), one request in flight per connection",
        "transfer": transfer,
    }  # fmt: skip
    if transfer.get("errors"):
        rows.append({"workload": "echo", "server": "geventsrv", "errors": transfer["errors"]})
    return publish(args.out / "http3", meta, rows, runs, markdown(
        [row for row in rows if "requests_per_s" in row], transfer, meta))  # fmt: skip
