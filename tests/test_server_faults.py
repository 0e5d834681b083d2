"""Hostile clients and network faults against the real server.

Each test states the behaviour it expects. After every one the server's open
descriptors (from /proc) and live greenlets (from its SIGUSR1 status line)
must be back where they were before the fault.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from faultproxy import FaultProxy, Faults
from support import abort, connect, echo_through, recv_exactly, recv_until_eof, wait_until

MiB = 1 << 20


def test_a_100_mb_sender_that_never_reads_is_bounded_and_reclaimed(start_server, rng):
    """Expected: the server stops reading once its replies back up, so its RSS grows by
    less than 4 MiB however much the client tries to send; other clients keep their
    round trips; the idle timeout closes the hog; descriptors return to baseline."""
    server = start_server("--idle-timeout", "2", "--log-level", "debug")
    baseline = server.status()
    hog = server.connect()
    hog.settimeout(0.2)
    chunk = rng.randbytes(MiB)
    offered = sent = 0
    stalled_since = None
    while offered < 100 * MiB:  # stops when the kernel takes no more (or the server gives up)
        try:
            sent += hog.send(chunk)
            stalled_since = None
        except TimeoutError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
        except OSError:
            break
        offered += len(chunk)
    assert sent < 100 * MiB  # back-pressure reached the client: nothing piles up in the server
    during = server.status()
    assert during["rss_kib"] - baseline["rss_kib"] < 4 * 1024, (baseline, during)
    for _ in range(50):  # a bystander is served meanwhile
        server.round_trip(rng.randbytes(1000))
    server.wait_for_log(r"closed after 2 s without progress", timeout=10)
    with contextlib.suppress(OSError):
        assert hog.recv(65536) is not None  # reset or EOF, either way the end
    hog.close()
    server.assert_back_to_baseline(baseline)


def test_slowloris_connections_are_reclaimed_and_new_clients_served(start_server):
    """Expected: 1,500 connections that send nothing, and 500 that trickle one byte
    less often than the idle timeout, are all closed within ~1.25x the timeout
    (plus the trickle interval); a new client is served throughout. All from one
    address, so the per-client limit is off: this is about the idle timeout."""
    server = start_server(
        "--idle-timeout", "1", "--log-level", "info", "--max-conns-per-client", "0"
    )
    baseline = server.status()
    idle = [server.connect() for _ in range(1500)]
    trickling = [server.connect() for _ in range(500)]
    server.round_trip()
    assert wait_until(lambda: server.status()["connections"] == 2000, interval=0.2)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and server.status()["connections"]:
        for sock in trickling:
            with contextlib.suppress(OSError):
                sock.send(b"x")
        server.round_trip()
        time.sleep(1.5)  # slower than the idle timeout: each byte comes too late
    server.assert_back_to_baseline(baseline, timeout=5)
    for sock in idle + trickling:  # every one of them sees the server's close
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
        sock.close()
    server.round_trip()


def test_resets_mid_echo_cost_nothing_and_leak_nothing(start_server, rng):
    """Expected: 100 clients that reset (SO_LINGER 0) while their echo is in flight end
    their own connections only: a bystander echoes throughout, no traceback, and
    descriptors and greenlets return to baseline."""
    server = start_server()
    baseline = server.status()
    bystander = server.connect()
    for _ in range(100):
        sock = server.connect()
        sock.sendall(rng.randbytes(rng.randint(1, 400_000)))
        abort(sock)
        bystander.sendall(b"fine")
        assert recv_exactly(bystander, 4) == b"fine"
    bystander.close()
    server.assert_back_to_baseline(baseline)


_STREAMING_CLIENT = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
data = bytes(range(256)) * 256
print("connected", flush=True)
while True:
    sock.sendall(data)
    sock.recv(65536)
"""


def test_clients_killed_with_sigkill_leak_nothing(start_server):
    """Expected: client processes killed with SIGKILL mid-stream (the kernel closes
    their sockets, with unread data: RST) leave no descriptor or greenlet behind."""
    server = start_server()
    baseline = server.status()
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", _STREAMING_CLIENT, str(server.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    try:
        for client in clients:
            assert client.stdout is not None
            assert client.stdout.readline() == "connected\n"
        assert wait_until(lambda: server.status()["connections"] == 10)
        time.sleep(0.3)  # let them stream
        for client in clients:
            client.kill()
    finally:
        for client in clients:
            client.kill()
            client.wait(10)
    server.round_trip()
    server.assert_back_to_baseline(baseline)


def test_a_half_open_connection_is_reclaimed_by_the_idle_timeout(start_server):
    """Expected: a peer that vanishes without FIN or RST (a blackholing proxy: it
    reads, forwards nothing and never closes) is closed by the idle timeout."""
    server = start_server("--idle-timeout", "1", "--log-level", "debug")
    baseline = server.status()
    with FaultProxy(server.address, Faults(blackhole=True)) as proxy:
        client = connect(proxy.address)
        assert wait_until(lambda: server.status()["connections"] == 1)
        server.wait_for_log(r"closed after 1 s without progress", timeout=5)
        server.assert_back_to_baseline(baseline)
        client.close()


def test_sigterm_under_load_echoes_everything_refuses_new_and_exits_0(start_server, rng):
    """Expected: with 100 clients streaming, SIGTERM stops new connections at once;
    every client then half-closes and gets back every byte it sent; the server
    exits 0 well inside its drain timeout."""
    server = start_server("--drain-timeout", "20")
    stop_sending = threading.Event()
    results: dict[int, tuple[int, int, bool]] = {}

    def client(number: int) -> None:
        payload = rng.randbytes(8192)
        with server.connect() as sock:
            received = bytearray()
            reader = threading.Thread(target=lambda: received.extend(recv_until_eof(sock)))
            reader.start()
            sent = 0
            while not stop_sending.is_set():
                sock.sendall(payload)
                sent += len(payload)
                time.sleep(0.005)
            sock.shutdown(socket.SHUT_WR)
            reader.join(30)
            expected = payload * (sent // len(payload))
            results[number] = (sent, len(received), bytes(received) == expected)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: server.status()["connections"] == 100)
    time.sleep(0.5)
    signalled = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait_for_log(r"stopping: no longer accepting")
    with pytest.raises(ConnectionRefusedError):
        connect(server.address, timeout=2)
    stop_sending.set()
    for thread in threads:
        thread.join(40)
    assert server.wait(30) == 0
    assert time.monotonic() - signalled < 20
    assert len(results) == 100
    for sent, received, exact in results.values():
        assert sent > 0 and received == sent and exact
    assert "0 closed at shutdown" in server.stderr


@pytest.mark.parametrize(
    "faults",
    [
        Faults(latency=0.02),
        Faults(slice_size=1),
        Faults(rate=200_000),
        Faults(slow_close=1.0),
        Faults(latency=0.005, slice_size=7, rate=500_000),
    ],
    ids=["latency", "one-byte-segments", "bandwidth-cap", "slow-close", "all-at-once"],
)
def test_echo_stays_byte_exact_through_network_faults(start_server, rng, faults):
    """Expected: delayed, sliced, rate-capped traffic, and a FIN passed on late, change
    only timing: what comes back is exactly what was sent, then a clean EOF."""
    server = start_server()
    baseline = server.status()
    with FaultProxy(server.address, faults) as proxy:
        size = 3000 if faults.slice_size == 1 else 100_000
        for _ in range(2):
            payload = rng.randbytes(size)
            with connect(proxy.address, timeout=30) as sock:
                assert echo_through(sock, payload, rng) == payload
    server.assert_back_to_baseline(baseline)


def test_a_reset_mid_stream_fails_cleanly_on_both_sides(start_server, rng):
    """Expected: when the network resets a connection half way, the client gets an
    error or a short read (never wrong bytes), the server logs one line for that
    connection and goes on serving; nothing leaks."""
    server = start_server("--log-level", "debug")
    baseline = server.status()
    with FaultProxy(server.address, Faults(reset_after=150_000)) as proxy:
        payload = rng.randbytes(400_000)
        received = bytearray()
        with connect(proxy.address) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(payload)
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    received += chunk
        assert len(received) < len(payload)
        assert bytes(received) == payload[: len(received)]  # a prefix: nothing wrong, only less
        assert proxy.resets == 1
    server.wait_for_log(r"connection lost|closed after")
    server.round_trip()
    server.assert_back_to_baseline(baseline)


# -- a real rate limit: tc tbf on a veth pair in a network namespace ------------------

_NETNS_SUBNET = ("10.213.77.1", "10.213.77.2")


def _netns_unavailable() -> str:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command (iproute2) is not installed"
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    if "10.213.77." in routes:
        return "10.213.77.0/30 is already routed on this machine"
    return ""


@pytest.fixture
def rate_limited_namespace():
    """A namespace joined to this one by a veth pair, each end shaped by tc tbf to 8 Mbit/s.

    Yields ``(namespace, server_address)``; skips, with the reason, where the
    machine does not allow it.
    """
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    name = f"geventsrv-test-{os.getpid()}"
    outside, inside = f"gsv{os.getpid() % 100000}a", f"gsv{os.getpid() % 100000}b"
    near, far = _NETNS_SUBNET
    tbf = ["tbf", "rate", "8mbit", "burst", "16kb", "latency", "400ms"]
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
        ["ip", "link", "set", inside, "netns", name],
        ["ip", "addr", "add", f"{near}/30", "dev", outside],
        ["ip", "link", "set", outside, "up"],
        ["ip", "-n", name, "addr", "add", f"{far}/30", "dev", inside],
        ["ip", "-n", name, "link", "set", inside, "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
        ["tc", "qdisc", "add", "dev", outside, "root", *tbf],
        ["tc", "-n", name, "qdisc", "add", "dev", inside, "root", *tbf],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode:
                pytest.skip(f"{' '.join(step)} failed: {done.stderr.strip()}")
        yield name, far, outside
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)


def test_large_payloads_round_trip_exactly_through_a_tbf_rate_limit(
    start_server, rng, rate_limited_namespace
):
    """Expected: behind an 8 Mbit/s token bucket each way (tc tbf on both veth ends;
    the shaper queues and drops, TCP recovers), 2 MiB payloads come back exact."""
    namespace, host, outside = rate_limited_namespace
    in_namespace = ("ip", "netns", "exec", namespace, sys.executable, "-m", "geventsrv")
    server = start_server("--host", host, command=in_namespace)
    for _ in range(2):
        payload = rng.randbytes(2 * MiB)
        with connect((host, server.port), timeout=60) as sock:
            assert echo_through(sock, payload, rng) == payload
    shaped = subprocess.run(
        ["tc", "-s", "qdisc", "show", "dev", outside], capture_output=True, text=True
    ).stdout
    assert "tbf" in shaped and " overlimits 0 " not in shaped, shaped  # the limit did bite


def test_client_gets_a_clean_error_not_a_hang_when_the_server_vanishes(start_server):
    """Expected: a client mid-echo when the server is SIGKILLed sees EOF or a reset."""
    server = start_server()
    sock = server.connect()
    sock.sendall(b"x" * 1000)
    assert recv_exactly(sock, 1000) == b"x" * 1000
    server.proc.kill()
    server.wait(10)
    with pytest.raises(OSError) as failure:
        sock.sendall(b"y" * 10)
        if not sock.recv(10):
            raise ConnectionResetError(errno.ECONNRESET, "EOF")
    assert failure.value.errno in (errno.ECONNRESET, errno.EPIPE)
    sock.close()


def test_bulk_streams_do_not_starve_a_small_client(start_server):
    """Expected: while two clients stream megabytes as fast as they can (and read their
    echo as fast), a third client's small round trips still get turns: at least 1,000
    in 3 s. Without the handler stepping aside after a run of full buffers, the streams'
    recv() and sendall() never waited, the hub never ran, and the third client managed
    46 to 616 round trips in 4 s (waits up to 1.5 s); with it, 4,600 to 5,700."""
    server = start_server()
    stop = threading.Event()
    streams = []

    def stream() -> None:
        sock = server.connect()
        streams.append(sock)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 * MiB)
        blob = b"z" * MiB

        def drain() -> None:
            with contextlib.suppress(OSError):
                while not stop.is_set() and sock.recv(MiB):
                    pass

        reader = threading.Thread(target=drain)
        reader.start()
        with contextlib.suppress(OSError):
            while not stop.is_set():
                sock.sendall(blob)
        reader.join(10)

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # the streams are in full flow
        round_trips = 0
        with server.connect() as sock:
            end = time.monotonic() + 3
            while time.monotonic() < end:
                sock.sendall(b"ping")
                assert recv_exactly(sock, 4) == b"ping"
                round_trips += 1
    finally:
        stop.set()
        for sock in streams:  # wakes the readers blocked in recv()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(15)
        for sock in streams:
            sock.close()
    assert round_trips >= 1000, round_trips
