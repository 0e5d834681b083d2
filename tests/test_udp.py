"""UDP echo (RFC 862): `python -m geventsrv --udp` / `--udp-only`, over real datagrams."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from support import ROOT

from geventsrv.udp import reflector_warning

MAX_IPV4_PAYLOAD = 65507


def udp_client(timeout: float = 5.0, bind: tuple[str, int] = ("127.0.0.1", 0)) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(bind)
    sock.settimeout(timeout)
    return sock


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("size", [0, 1, 1000, 8192, 8193, 40_000, MAX_IPV4_PAYLOAD])
def test_each_datagram_comes_back_whole_and_exact(start_server, rng, size):
    server = start_server("--udp-only")
    payload = rng.randbytes(size)
    with udp_client() as sock:
        sock.sendto(payload, server.address)
        data, sender = sock.recvfrom(65536)
    assert data == payload
    assert sender == server.address


def test_upper_mode_over_udp(start_server):
    server = start_server("--udp-only", "--mode", "upper")
    with udp_client() as sock:
        sock.sendto(b"shout \xe9 this", server.address)
        assert sock.recvfrom(65536)[0] == b"SHOUT \xe9 THIS"


def test_udp_alongside_tcp_on_the_same_port(start_server, rng):
    server = start_server("--udp")
    server.wait_for_log(r"\(mode=echo, tcp and udp\)")
    with udp_client() as sock:
        sock.sendto(b"by datagram", server.address)
        assert sock.recvfrom(65536)[0] == b"by datagram"
    with server.connect() as tcp:
        tcp.sendall(b"by stream")
        assert tcp.recv(100) == b"by stream"


def test_udp_only_does_not_listen_on_tcp(start_server):
    server = start_server("--udp-only")
    # From another address: a client on the same address could draw the server's UDP port
    # number as its own TCP source port and connect to itself (TCP's self-connect).
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=2, source_address=("127.0.0.2", 0))


def test_loop_guard_drops_reserved_and_own_source_ports(start_server):
    server = start_server("--udp-only")
    host, port = server.address
    senders = []
    if os.geteuid() == 0:
        senders.append(("127.0.0.1", 1023))  # a "system service" port
    senders.append(("127.0.0.2", port))  # the server's own port, on another loopback address
    for bind in senders:
        with udp_client(timeout=0.5, bind=bind) as sock:
            sock.sendto(b"ping", (host, port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(100)
    with udp_client() as sock:  # an ordinary client is still answered
        sock.sendto(b"ping", (host, port))
        assert sock.recvfrom(100)[0] == b"ping"
    assert server.stop() == 0
    assert f"1 datagram(s) echoed, {len(senders)} dropped by the loop guard" in server.stderr


def test_memory_stays_flat_under_a_datagram_flood(start_server, rng):
    """20,000 datagrams of 60 KB (1.2 GB) sent as fast as possible, replies never read.

    With the per-source rate off, so that every datagram the kernel queues is echoed.
    """
    server = start_server("--udp-only", "--udp-rate-per-client", "0")
    before = rss_kib(server.pid)
    payload = rng.randbytes(60_000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.settimeout(5)
        for _ in range(20_000):
            flood.sendto(payload, server.address)
    after = rss_kib(server.pid)
    assert after - before < 8 * 1024, (before, after)  # KiB: no per-datagram memory kept
    with udp_client() as sock:
        sock.sendto(b"still here", server.address)
        assert sock.recvfrom(100)[0] == b"still here"


def test_ipv6_udp(start_server):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server = start_server("--udp-only", "--host", "::1")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"six", server.address)
        assert sock.recvfrom(100)[0] == b"six"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--udp", "--mode", "chat"], "argument --udp: serves the echo and upper modes, not chat"),
        (["--udp", "--udp-only"], "not allowed with argument"),
    ],
)
def test_udp_flag_errors(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv", "--port", "0", *args],
        capture_output=True, text=True, timeout=20, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_udp_only_shutdown_reports_datagrams_not_tcp_connections(start_server):
    server = start_server("--udp-only")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping", server.address)
        assert sock.recvfrom(100)[0] == b"ping"
    assert server.stop() == 0
    assert "stopped: udp: 1 datagram(s) echoed" in server.stderr
    assert "connection(s) served" not in server.stderr


@pytest.mark.parametrize(
    ("host", "allow_list", "warned"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("0.0.0.0", False, True),
        ("192.0.2.10", False, True),
        ("192.0.2.10", True, False),
        ("::", False, True),
    ],
)
def test_reflector_warning(host, allow_list, warned):
    """Where tests may not bind, the decision itself: warned unless loopback or allow-listed."""
    warning = reflector_warning(host, allow_list, "100:200")
    assert (warning is not None) is warned
    if warning:
        assert "--allow" in warning and "100:200" in warning
