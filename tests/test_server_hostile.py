"""Hostile clients against a real server: clients bound to distinct loopback addresses
(127.0.0.2 attacks, 127.0.0.3 is the bystander), per-client limits, allow/deny, UDP floods."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CLIENT_TIMEOUT, recv_exactly, wait_until

from geventsrv.bench.hostile import ATTACKER, VICTIM, client_socket, victim_tries
from geventsrv.proxyproto import ProxyHeader, encode


def from_address(source: str, server, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
    sock = client_socket(source, timeout)
    sock.connect(server.address)
    return sock


def served(sock: socket.socket, payload: bytes = b"ping") -> bool:
    """Whether ``sock`` gets ``payload`` echoed (``False``: closed or reset instead)."""
    try:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload)) == payload
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return False


def test_one_client_cannot_take_every_slot(start_server):
    server = start_server("--max-conns", "50", "--max-conns-per-client", "5")
    held = [from_address(ATTACKER, server) for _ in range(5)]
    try:
        assert all(served(sock) for sock in held)
        with from_address(ATTACKER, server) as sixth:
            assert not served(sixth)  # accepted and closed at once
        with from_address(VICTIM, server) as bystander:
            assert served(bystander)
        server.wait_for_log(r"127\.0\.0\.2:\d+: refused \(it holds --max-conns-per-client")
        held.pop().close()
        assert wait_until(lambda: served(from_address(ATTACKER, server)), timeout=5)
    finally:
        for sock in held:
            sock.close()


def via_proxy(server, source: str) -> socket.socket:
    """A connection whose PROXY v1 header names ``source`` as the client."""
    sock = socket.create_connection(server.address, timeout=CLIENT_TIMEOUT)
    sock.sendall(encode(ProxyHeader(1, "PROXY", "TCP4", (source, 4000), ("127.0.0.1", 7))))
    return sock


def test_default_limit_is_a_tenth_of_max_conns_for_a_remote_client(start_server, descriptors):
    """A client from the network (here named by a PROXY header) gets a tenth of --max-conns."""
    server = start_server("--max-conns", "2000", "--proxy-protocol", "v1")  # limit: 200
    held = []
    try:
        for _ in range(200):
            held.append(via_proxy(server, "198.51.100.1"))
        assert served(held[-1])
        with via_proxy(server, "198.51.100.1") as extra:
            assert not served(extra)
        with via_proxy(server, "198.51.100.2") as other:
            assert served(other)
    finally:
        for sock in held:
            sock.close()


def test_the_default_limit_spares_loopback_clients(start_server, descriptors):
    """A local load test of 1,200 connections is not cut to a tenth of --max-conns.

    On loopback every local client is the same address: the default limit
    would be a global cap (here 200). Given explicitly, it applies to loopback
    too (test_one_client_cannot_take_every_slot).
    """
    server = start_server("--max-conns", "2000")
    held = []
    try:
        for _ in range(1200):
            held.append(from_address(ATTACKER, server))
        assert all(served(sock) for sock in held)
        assert server.status()["connections"] == 1200
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def descriptors():
    """Room for a thousand client sockets in this process (the soft limit may be 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_held_maximum_costs_the_bystander_nothing(start_server, descriptors):
    """One address holds all it may (and tries for every slot); the other is served at once."""
    server = start_server("--max-conns", "1000", "--max-conns-per-client", "100")
    baseline = server.status()
    held = []
    try:
        for _ in range(1000):
            with contextlib.suppress(OSError):
                held.append(from_address(ATTACKER, server, timeout=5))
        tries = victim_tries(server.address, time.monotonic() + 1.0, patience=2.0)
        assert tries and all(t is not None and t < 0.1 for t in tries), tries
    finally:
        for sock in held:
            sock.close()
    server.assert_back_to_baseline(baseline)


ALLOW_DENY = [
    # (flags, source, TCP and UDP served?)
    ((), "127.0.0.2", True),
    (("--allow", "127.0.0.2"), "127.0.0.2", True),
    (("--allow", "127.0.0.2"), "127.0.0.3", False),
    (("--deny", "127.0.0.2"), "127.0.0.2", False),
    (("--deny", "127.0.0.2"), "127.0.0.3", True),
    (("--allow", "127.0.0.0/8", "--deny", "127.0.0.2"), "127.0.0.2", False),
    (("--allow", "127.0.0.0/8", "--deny", "127.0.0.2"), "127.0.0.3", True),
    (("--allow", "127.0.0.2,127.0.0.3"), "127.0.0.3", True),
    (("--allow", "10.0.0.0/8"), "127.0.0.2", False),
    (("--allow", "::1", "--host", "::1"), "::1", True),
    (("--deny", "::1", "--host", "::1"), "::1", False),
    (("--allow", "127.0.0.1", "--host", "::1"), "::1", False),
]


@pytest.mark.parametrize(("flags", "source", "expected"), ALLOW_DENY)
def test_allow_and_deny_tcp_and_udp(start_server, flags, source, expected):
    server = start_server("--udp", *flags)
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as tcp:
        tcp.settimeout(CLIENT_TIMEOUT)
        tcp.bind((source, 0))
        tcp.connect(server.address)
        assert served(tcp) is expected
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.5 if not expected else CLIENT_TIMEOUT)
        udp.bind((source, 0))
        udp.sendto(b"datagram", server.address)
        try:
            answered = udp.recv(100) == b"datagram"
        except TimeoutError:
            answered = False
        assert answered is expected


def test_accept_rate_per_client(start_server):
    server = start_server("--accept-rate-per-client", "5:5")
    outcomes = []
    for _ in range(20):
        with from_address(ATTACKER, server) as sock:
            outcomes.append(served(sock))
    assert 5 <= sum(outcomes) <= 7  # the burst, and what refilled meanwhile
    with from_address(VICTIM, server) as sock:
        assert served(sock)


def test_udp_flood_gets_at_most_its_bucket(start_server):
    server = start_server("--udp-only", "--udp-rate-per-client", "50:50")
    rss_before = server.rss_bytes()
    echoed = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind((ATTACKER, 0))
        flood.setblocking(False)
        started = time.monotonic()
        for _ in range(1000):  # 10x the bucket's rate, over about 2 s
            flood.sendto(b"x" * 100, server.address)
            time.sleep(0.002)
            with contextlib.suppress(BlockingIOError):
                while flood.recv(200):
                    echoed += 1
        time.sleep(0.2)
        with contextlib.suppress(BlockingIOError):
            while flood.recv(200):
                echoed += 1
        seconds = time.monotonic() - started
    assert 50 <= echoed <= 50 + 50 * seconds + 5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.settimeout(CLIENT_TIMEOUT)
        other.bind((VICTIM, 0))
        other.sendto(b"mine", server.address)
        assert other.recv(100) == b"mine"
    assert server.rss_bytes() - rss_before < 8 * 2**20


def test_limits_apply_to_the_client_a_proxy_names(start_server):
    server = start_server("--proxy-protocol", "v1", "--max-conns-per-client", "1")
    first = via_proxy(server, "198.51.100.1")
    try:
        assert served(first)
        with via_proxy(server, "198.51.100.1") as second:  # same client, same proxy
            assert not served(second)
        with via_proxy(server, "198.51.100.2") as other:  # another client, same proxy
            assert served(other)
        # Refused after its PROXY header, logged as a refusal at accept() is.
        server.wait_for_log(r"198\.51\.100\.1:4000: refused \(it holds --max-conns-per-client")
    finally:
        first.close()


@pytest.mark.slow
def test_a_storm_of_20000_attempts_from_one_address(start_server, record_property):
    """With the accept rate on, the bystander is echoed quickly every time; the server
    returns to baseline.

    Measured here: worst 67-93 ms over three runs. The bound asserted is 0.5 s,
    five times that, because the attacker shares this machine's two cores with
    the server; it still catches the accept loop that never let the hub turn
    while connections kept coming (worst 0.7-1.2 s).
    """
    import multiprocessing
    import threading

    from geventsrv.bench.hostile import _storm, summarize

    server = start_server("--accept-rate-per-client", "50:100", "--max-conns-per-client", "0")
    baseline = server.status()
    until = time.monotonic() + 60
    storm = multiprocessing.get_context("spawn").Process(
        target=_storm, args=(server.address, 20_000, until)
    )
    tries: list[float | None] = []
    done = threading.Event()

    def bystander() -> None:  # tries every 20 ms for as long as the storm lasts
        while not done.is_set():
            tries.extend(victim_tries(server.address, time.monotonic() + 0.5, 3.0))

    storm.start()
    watcher = threading.Thread(target=bystander)
    watcher.start()
    storm.join(70)
    done.set()
    watcher.join(10)
    figures = summarize(tries)
    record_property("bystander", figures)
    print(f"\nbystander during a 20,000-attempt storm: {figures}")
    assert figures["unserved"] == 0, figures
    assert figures["worst_ms"] < 500, figures
    server.wait_for_log(r"refused \(it opens connections faster")
    server.assert_back_to_baseline(baseline)


# -- hostile byte streams on every mode, at once ----------------------------------------

#: Examples per mode: a short run in CI; GEVENTSRV_FUZZ_EXAMPLES=500 for a long one.
FUZZ_EXAMPLES = int(os.environ.get("GEVENTSRV_FUZZ_EXAMPLES", "3"))

FRONTS = {
    "echo": ("--mode", "echo"),
    "upper": ("--mode", "upper"),
    "chat": ("--mode", "chat"),
    "info": ("--mode", "info"),
    "tls": ("--tls-handshake-timeout", "0.5", "--tls-cert"),  # the certificate: in the test
    "proxy": ("--proxy-protocol", "any", "--proxy-timeout", "0.5"),
}

garbage = st.lists(
    st.one_of(
        st.binary(max_size=2000),
        st.just(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),  # a ClientHello's start
        st.just(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        st.just(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"),  # a v2 header claiming 64 KiB
        st.just(b"x" * 70_000),  # longer than a chat line may be (64 KiB)
    ),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("front", FRONTS)
def test_garbage_from_many_clients_at_once_costs_only_their_connections(start_server, certs, front):
    import threading

    flags = FRONTS[front] + ((certs.server,) if front == "tls" else ())
    server = start_server(*flags, "--idle-timeout", "1")

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(garbage, min_size=10, max_size=10))
    def attack(streams: list[list[bytes]]) -> None:
        def send(chunks: list[bytes]) -> None:
            with contextlib.suppress(OSError), from_address(ATTACKER, server, timeout=2) as sock:
                for chunk in chunks:
                    sock.sendall(chunk)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass

        senders = [threading.Thread(target=send, args=(chunks,)) for chunks in streams]
        for sender in senders:
            sender.start()
        if front in ("echo", "upper"):  # a well-behaved client beside them, byte for byte
            with from_address(VICTIM, server) as sock:
                payload = b"well behaved\n" * 100
                sock.sendall(payload)
                expected = payload.upper() if front == "upper" else payload
                assert recv_exactly(sock, len(payload)) == expected
        for sender in senders:
            sender.join(10)

    attack()
    assert server.proc.poll() is None
    if front in ("echo", "upper", "info", "chat"):
        with from_address(VICTIM, server) as sock:
            sock.sendall(b"still here\n")
            assert sock.recv(4096)  # an echo, an info line or a chat greeting


@pytest.mark.slow
def test_the_hostile_bench_reports_both_attacks(tmp_path):
    """``python -m geventsrv.bench hostile``, small: both scenarios, figures written."""
    import json
    import subprocess
    import sys

    from support import ROOT

    out = tmp_path / "hostile.json"
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.bench", "hostile", "--max-conns", "300",
         "--attempts", "500", "--out", str(out), "--", "--max-conns-per-client", "30"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hold, storm = json.loads(out.read_text())["results"]
    assert hold["scenario"] == "hold" and hold["held"] == 300
    assert hold["tries"] > 10 and hold["unserved"] == 0
    assert storm["scenario"] == "storm" and storm["tries"] >= 1
