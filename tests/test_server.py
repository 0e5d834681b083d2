"""The server as a client sees it: `python -m geventsrv` in a subprocess, real sockets."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from support import (
    CLIENT_TIMEOUT,
    abort,
    connect,
    echo_through,
    recv_exactly,
    recv_until_eof,
    wait_until,
)

MiB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 2, 100, 65535, 65536, 65537, 1 * MiB + 3, 5 * MiB])
def test_echo_returns_every_byte_unchanged(start_server, rng, size):
    """Random binary payloads, sent in random chunk sizes and read in others, come back exact."""
    server = start_server()
    payload = rng.randbytes(size)
    with server.connect() as sock:
        assert echo_through(sock, payload, rng) == payload


def test_many_messages_on_one_connection_keep_their_order(start_server, rng):
    server = start_server()
    with server.connect() as sock:
        for _ in range(200):
            message = rng.randbytes(rng.randint(1, 3000))
            sock.sendall(message)
            assert recv_exactly(sock, len(message)) == message


def test_upper_mode_uppercases_ascii_letters_only(start_server, rng):
    server = start_server("--mode", "upper")
    payload = bytes(range(256)) * 64 + rng.randbytes(200_000)
    # The rule, written out byte by byte rather than the way the server applies it.
    lower, upper = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    to_upper = {ord(low): ord(up) for low, up in zip(lower, upper, strict=True)}
    expected = bytes(to_upper.get(byte, byte) for byte in payload)
    with server.connect() as sock:
        assert echo_through(sock, payload, rng) == expected


def test_half_close_gets_every_byte_back_then_a_clean_fin(start_server, rng):
    """The client writes everything without reading, shuts its write side, then reads."""
    server = start_server()
    payload = rng.randbytes(200_000)  # fits the socket buffers, so no reader is needed yet
    with server.connect() as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == payload  # FIN, not a reset: recv returned b""
        assert sock.recv(1) == b""


def test_no_banner_and_nothing_sent_unasked(start_server):
    server = start_server()
    with server.connect() as sock:
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_500_concurrent_clients_each_get_their_own_bytes(start_server):
    """All 500 are connected at once before any sends, then each echoes 3 messages."""
    server = start_server()
    clients = 500
    barrier = threading.Barrier(clients, timeout=60)
    failures: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(index)
        try:
            with connect(server.address, timeout=30) as sock:
                barrier.wait()
                for _ in range(3):
                    message = rng.randbytes(rng.randint(1, 20_000))
                    sock.sendall(message)
                    if recv_exactly(sock, len(message)) != message:
                        failures.append(f"client {index}: wrong bytes")
        except Exception as exc:
            failures.append(f"client {index}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not failures, failures[:5]
    assert server.stop() == 0
    served = server.wait_for_log(r"stopped: (\d+) connection")
    assert int(served.group(1)) == clients


def test_max_conns_holds_the_extra_client_and_serves_it_when_a_slot_frees(start_server):
    server = start_server("--max-conns", "2")
    first, second = server.connect(), server.connect()
    for sock in (first, second):
        sock.sendall(b"served")
        assert recv_exactly(sock, 6) == b"served"
    waiting = server.connect()  # completes: the kernel queues it in the backlog
    waiting.sendall(b"queued")
    waiting.settimeout(0.5)
    with pytest.raises(TimeoutError):
        waiting.recv(6)  # not served while both slots are taken
    first.close()
    waiting.settimeout(CLIENT_TIMEOUT)
    assert recv_exactly(waiting, 6) == b"queued"  # sent while queued, echoed once accepted
    second.sendall(b"still")
    assert recv_exactly(second, 5) == b"still"
    second.close()
    waiting.close()


def test_idle_timeout_closes_an_idle_connection_but_not_an_active_one(start_server):
    server = start_server("--idle-timeout", "1")
    idle, active = server.connect(), server.connect()
    started = time.monotonic()
    closed_at = None
    while time.monotonic() - started < 3:
        active.sendall(b"tick")
        assert recv_exactly(active, 4) == b"tick"
        idle.settimeout(0.2)
        try:
            if idle.recv(1) == b"" and closed_at is None:
                closed_at = time.monotonic() - started
        except TimeoutError:
            pass
    assert closed_at is not None and 0.8 < closed_at < 2.5
    active.sendall(b"alive")
    assert recv_exactly(active, 5) == b"alive"
    idle.close()
    active.close()


def test_a_client_that_never_reads_is_reclaimed_by_the_idle_timeout(start_server, rng):
    """Once its reply cannot be written for the idle timeout, the connection is closed."""
    server = start_server("--idle-timeout", "1", "--log-level", "debug")
    hog = server.connect()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.settimeout(0.05)
    sent = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # stops when the server gives up on us
        try:
            sent += hog.send(rng.randbytes(65536))
        except TimeoutError:
            pass
        except OSError:
            break
    assert sent > 0
    server.wait_for_log(r"closed after 1 s without progress")
    with server.connect() as other:
        other.sendall(b"ok")
        assert recv_exactly(other, 2) == b"ok"
    hog.close()


def test_client_resets_cost_only_their_own_connection(start_server, rng):
    server = start_server("--log-level", "debug")
    bystander = server.connect()
    for _ in range(20):
        sock = server.connect()
        sock.sendall(rng.randbytes(500_000))  # the server is mid-echo when the RST lands
        abort(sock)
        bystander.sendall(b"fine")
        assert recv_exactly(bystander, 4) == b"fine"
    server.wait_for_log(r"connection lost: Connection reset by peer")
    bystander.close()
    assert server.stop() == 0
    assert "Traceback" not in server.stderr


def test_garbage_and_abrupt_disconnects_leave_the_server_serving(start_server, rng):
    server = start_server()
    for _ in range(10):
        sock = server.connect()
        sock.sendall(rng.randbytes(rng.randint(1, 100_000)))
        sock.close()  # leaves unread echo behind: the server's write hits a reset
    with server.connect() as sock:
        assert echo_through(sock, b"after the storm", rng) == b"after the storm"


def test_ipv6_loopback(start_server, rng):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server = start_server("--host", "::1")
    assert server.address[0] == "::1"
    with server.connect() as sock:
        assert sock.family == socket.AF_INET6
        assert echo_through(sock, b"six" * 1000, rng) == b"six" * 1000


def test_port_0_logs_the_port_actually_bound(start_server):
    server = start_server()
    assert server.port > 0
    with server.connect() as sock:
        assert sock.getpeername()[1] == server.port


def test_accept_backs_off_without_spinning_when_out_of_descriptors(start_server):
    """With a 64-descriptor limit, clients past it queue; the server idles, then recovers."""
    import resource

    from geventsrv.procstats import cpu_seconds

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    server = start_server(preexec_fn=low_limit)
    clients = []
    for _ in range(80):  # more than the server has descriptors for
        clients.append(server.connect())
    server.wait_for_log(r"accept\(\) failed: Too many open files")
    served = clients[0]
    served.sendall(b"still echoing")
    assert recv_exactly(served, 13) == b"still echoing"
    before = cpu_seconds(server.pid)
    time.sleep(2)
    assert cpu_seconds(server.pid) - before < 0.5  # backing off, not spinning
    warnings = server.stderr.count("accept() failed")
    assert warnings <= 3, server.stderr  # rate-limited
    for sock in clients[:40]:
        sock.close()
    last = clients[-1]  # was stuck in the backlog; served once descriptors free
    last.sendall(b"late")
    assert recv_exactly(last, 4) == b"late"
    assert wait_until(lambda: "accepting again" in server.stderr)
    for sock in clients[40:]:
        sock.close()
