"""Property-based tests: any payload, cut into any writes and read in any sizes, round-trips.

One server per mode serves every example of a module (hypothesis runs
hundreds), so the examples also show that connections come and go cleanly.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ServerProcess, connect, recv_exactly, recv_until_eof

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,  # a network round trip has no fixed time
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    running = {
        mode: ServerProcess("--port", "0", "--mode", mode).wait_listening()
        for mode in ("echo", "upper", "chat")
    }
    yield running
    for server in running.values():
        assert server.stop() == 0
        assert "Traceback" not in server.stderr, server.stderr


def _cut(payload: bytes, sizes: list[int]) -> list[bytes]:
    """``payload`` in pieces of the given sizes (cycled); the last piece takes the rest."""
    pieces, start = [], 0
    for size in sizes * (len(payload) // max(sum(sizes), 1) + 1):
        if start >= len(payload):
            break
        pieces.append(payload[start : start + size])
        start += size
    if start < len(payload):
        pieces.append(payload[start:])
    return pieces


def _send_and_read(
    address: tuple[str, int], writes: list[bytes], read_size: int, half_close: bool
) -> bytes:
    """Send every piece then half-close (or read exactly as much back); return what came back."""
    total = sum(len(piece) for piece in writes)
    with connect(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = bytearray()
        for piece in writes:
            sock.sendall(piece)
            # Read what is there as we go, so large payloads never deadlock the buffers.
            sock.setblocking(False)
            try:
                while chunk := sock.recv(read_size):
                    received += chunk
            except BlockingIOError:
                pass
            sock.settimeout(10)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
            received += recv_until_eof(sock, read_size)
        else:
            received += recv_exactly(sock, total - len(received), read_size)
        return bytes(received)


payloads = st.binary(min_size=0, max_size=200_000)
write_sizes = st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=8)
read_sizes = st.integers(min_value=1, max_value=100_000)


@PROPERTY_SETTINGS
@given(payload=payloads, sizes=write_sizes, read_size=read_sizes, half_close=st.booleans())
def test_echo_returns_any_payload_in_any_chunking(servers, payload, sizes, read_size, half_close):
    address = servers["echo"].address
    got = _send_and_read(address, _cut(payload, sizes), read_size, half_close)
    assert got == payload


@PROPERTY_SETTINGS
@given(payload=payloads, sizes=write_sizes, read_size=read_sizes, half_close=st.booleans())
def test_upper_returns_any_payload_uppercased(servers, payload, sizes, read_size, half_close):
    address = servers["upper"].address
    got = _send_and_read(address, _cut(payload, sizes), read_size, half_close)
    assert got == payload.upper()
    assert len(got) == len(payload)


lines = st.lists(
    st.binary(min_size=0, max_size=3000).map(lambda line: line.replace(b"\n", b"")),
    min_size=1,
    max_size=20,
)


@PROPERTY_SETTINGS
@given(lines=lines, sizes=write_sizes)
def test_chat_delivers_any_lines_in_any_chunking_to_the_others(servers, lines, sizes):
    """Whatever the sender's write boundaries, a listener gets each line once, whole, in order."""
    address = servers["chat"].address
    with connect(address) as listener:
        me = _read_line(listener)  # "<announce> HOST is connected as <userN>."
        assert me.startswith(b"<announce> ") and b" is connected as <user" in me
        with connect(address) as talker:
            # Leavers from earlier examples may still be announced: skip to the talker's join.
            joined = _read_line(listener)
            while b" is connected as " not in joined:
                joined = _read_line(listener)
            name = joined.rsplit(b" ", 1)[1].rstrip(b".\n")
            for piece in _cut(b"".join(line + b"\n" for line in lines), sizes):
                talker.sendall(piece)
            for line in lines:
                assert _read_line(listener, name) == name + b" " + line + b"\n"
        assert _read_line(listener, name) == b"<announce> " + name + b" is disconnected.\n"


def _read_line(sock: socket.socket, about: bytes = b"") -> bytes:
    """The next line; with ``about``, announcements that do not name it are skipped."""
    while True:
        line = bytearray()
        while not line.endswith(b"\n"):
            byte = sock.recv(1)
            assert byte, "connection closed mid-line"
            line += byte
        if not about or not line.startswith(b"<announce> ") or about in line:
            return bytes(line)
