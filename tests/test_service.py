"""Running a server as a process: shutdown signals, drain, forced stop, the status signal."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest
from support import connect, echo_through, recv_exactly, send_chunks_in_thread

from geventsrv.service import raise_open_file_limit

MiB = 1 << 20


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_transfer_echoes_every_byte_then_exits_0(start_server, rng, signum):
    server = start_server("--drain-timeout", "20")
    payloads = [rng.randbytes(2 * MiB) for _ in range(4)]
    socks = [server.connect() for _ in payloads]
    received: list[bytes] = [b""] * len(socks)
    halfway = threading.Barrier(len(socks) + 1, timeout=20)
    go_on = threading.Event()

    def transfer(index: int) -> None:
        sock, payload = socks[index], payloads[index]
        half = len(payload) // 2
        sender = send_chunks_in_thread(sock, [payload[:half]], half_close=False)
        first = recv_exactly(sock, half)
        sender.join()
        halfway.wait()  # every client is mid-transfer here
        go_on.wait(20)
        rest = echo_through(sock, payload[half:], random.Random(index))
        received[index] = first + rest

    threads = [threading.Thread(target=transfer, args=(i,)) for i in range(len(socks))]
    for thread in threads:
        thread.start()
    halfway.wait()
    server.send_signal(signum)
    server.wait_for_log(r"received: shutting down")
    go_on.set()
    for thread in threads:
        thread.join(30)
    assert received == payloads
    assert server.wait(20) == 0
    assert "stopped: 4 connection(s) served" in server.stderr
    assert ", 0 closed at shutdown" in server.stderr  # all finished on their own
    for sock in socks:
        sock.close()


def test_after_a_stop_signal_new_connections_are_refused(start_server):
    server = start_server("--drain-timeout", "20")
    holder = server.connect()  # keeps the server draining
    holder.sendall(b"accepted")
    assert recv_exactly(holder, 8) == b"accepted"
    server.send_signal(signal.SIGTERM)
    server.wait_for_log(r"no longer accepting")
    with pytest.raises(ConnectionRefusedError):
        connect(server.address, timeout=2)
    holder.sendall(b"drain")
    assert recv_exactly(holder, 5) == b"drain"  # open connections are still served
    holder.close()
    assert server.wait(10) == 0


def test_drain_deadline_closes_what_is_left_and_exits_0(start_server):
    server = start_server("--drain-timeout", "1")
    lingering = server.connect()
    lingering.sendall(b"accepted")
    assert recv_exactly(lingering, 8) == b"accepted"
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert lingering.recv(1) == b""  # closed by the server at the deadline
    assert server.wait(10) == 0
    assert 0.8 < time.monotonic() - started < 5
    assert "8 byte(s) received, 8 sent, 1 closed at shutdown" in server.stderr
    lingering.close()


def test_second_signal_forces_an_immediate_exit(start_server):
    server = start_server("--drain-timeout", "60")
    lingering = server.connect()
    lingering.sendall(b"accepted")
    assert recv_exactly(lingering, 8) == b"accepted"
    server.send_signal(signal.SIGTERM)
    server.wait_for_log(r"1 connection\(s\) open, draining for up to 60 s")
    time.sleep(0.3)
    assert server.proc.poll() is None  # still draining
    started = time.monotonic()
    server.send_signal(signal.SIGINT)
    assert server.wait(10) == 4
    assert time.monotonic() - started < 3
    assert lingering.recv(1) == b""
    lingering.close()
    # The first stop was still waiting when the second finished it: one summary.
    assert server.stderr.count("stopped:") == 1, server.stderr


def test_a_stop_with_nothing_open_says_so_instead_of_draining(start_server):
    server = start_server()
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert "no longer accepting; no connection open" in server.stderr
    assert "draining for up to" not in server.stderr


def test_sigusr1_logs_a_status_line_with_the_connections_open(start_server):
    server = start_server()
    with server.connect() as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        figures = server.status()
    assert figures["connections"] == 1 and figures["accepted"] == 1
    # The server's own count and /proc's, read a moment apart, agree.
    assert abs(figures["descriptors"] - figures["fds"]) <= 1
    assert figures["greenlets"] >= 3  # hub, accept loop, the connection
    assert server.proc.poll() is None  # the signal did not stop it


def test_raise_open_file_limit_never_passes_the_hard_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        assert raise_open_file_limit(soft) == soft
        wanted = hard if hard != resource.RLIM_INFINITY else soft + 10
        assert raise_open_file_limit(wanted + 1_000_000) == wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
