"""The HTTP/2 attacks a server is judged on, each driven from a real socket: the attacker's
connection ends with GOAWAY and the code the best servers use (ENHANCE_YOUR_CALM), a second
client is served meanwhile, and the server's memory stays bounded.

Each flood is sent as fast as the socket takes it, up to a count well past the budget the
server keeps (see ``geventsrv/http/h2.py``); the bounds on what it holds are what the last
test of each case measures.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable

import psutil
import pytest
from h2client import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEADERS,
    PING,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    RawClient,
    frame,
)
from support import ServerProcess

pytest.importorskip("hpack")

GET = [(":method", "GET"), (":scheme", "http"), (":path", "/?delay=1"), (":authority", "t")]
MIB = 1 << 20


@pytest.fixture
def server():
    server = ServerProcess("--port", "0", "--mode", "http", "--http-max-delay", "2")
    server.wait_listening()
    yield server
    server.stop()
    assert "Traceback" not in server.stderr, server.stderr


def rss(server: ServerProcess) -> int:
    return int(psutil.Process(server.pid).memory_info().rss)


def flood(client: RawClient, chunks: Iterable[bytes]) -> threading.Thread:
    """Send every chunk, from a thread (the server may stop reading mid-way: it closes)."""

    def send() -> None:
        with contextlib.suppress(OSError):
            for chunk in chunks:
                client.sock.sendall(chunk)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def served_meanwhile(server: ServerProcess) -> None:
    """Another client, on a connection of its own, gets its answer."""
    with RawClient(server.address) as other:
        other.request(1, "/bystander")
        assert other.response(1).status == 200


def attack(server: ServerProcess, make_chunks) -> int | None:
    """Run one attack; the GOAWAY code it got. The bystander is served, memory bounded."""
    before = rss(server)
    with RawClient(server.address) as attacker:
        sender = flood(attacker, make_chunks(attacker))
        served_meanwhile(server)
        code = attacker.goaway()
        sender.join(30)
    assert rss(server) - before < 64 * MIB
    served_meanwhile(server)
    return code


def test_rapid_reset(server):
    """CVE-2023-44487: streams opened and reset before their answer, over and over."""

    def chunks(attacker: RawClient):
        for stream in range(1, 2 * 5000, 2):
            yield frame(HEADERS, END_HEADERS | END_STREAM, stream, attacker.block(GET)) + frame(
                RST_STREAM, 0, stream, b"\0\0\0\x08"
            )

    assert attack(server, chunks) == ENHANCE_YOUR_CALM


def test_continuation_flood(server):
    """CVE-2024-27316's class: a header block that never ends, in large pieces."""

    def chunks(attacker: RawClient):
        yield frame(HEADERS, END_STREAM, 1, attacker.block(GET))
        for _ in range(2000):  # 32 MiB, were it all taken
            yield frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b" * 3276)

    assert attack(server, chunks) == ENHANCE_YOUR_CALM


def test_continuation_flood_of_empty_frames(server):
    def chunks(attacker: RawClient):
        yield frame(HEADERS, END_STREAM, 1, attacker.block(GET))
        yield frame(CONTINUATION, 0, 1) * 100_000

    assert attack(server, chunks) == ENHANCE_YOUR_CALM


def test_hpack_bomb(server):
    """One 4 KiB entry in the decoder's table, then a block that names it 100,000 times:
    100 KB on the wire that would decode to 400 MB."""

    def chunks(attacker: RawClient):
        fields = [*GET, ("x", "v" * 4000)]  # the last field: the table's newest entry
        yield frame(HEADERS, END_HEADERS | END_STREAM, 1, attacker.encoder.encode(fields))
        bomb = attacker.block(GET) + b"\xbe" * 100_000  # index 62: the entry, each time
        pieces = [bomb[at : at + 16384] for at in range(0, len(bomb), 16384)]
        yield frame(HEADERS, END_STREAM, 3, pieces[0]) + b"".join(
            frame(CONTINUATION, END_HEADERS if piece is pieces[-1] else 0, 3, piece)
            for piece in pieces[1:]
        )

    assert attack(server, chunks) == ENHANCE_YOUR_CALM


@pytest.mark.parametrize(
    "make",
    [
        lambda a: frame(SETTINGS, 0, 0),
        lambda a: frame(PING, 0, 0, b"12345678"),
        lambda a: frame(PRIORITY, 0, 3, b"\0\0\0\x01\x10"),
        lambda a: frame(0x20, 0, 0, b"x"),
    ],
    ids=["SETTINGS", "PING", "PRIORITY", "unknown frames"],
)
def test_floods_of_frames_that_ask_for_work(server, make):
    def chunks(attacker: RawClient):
        yield make(attacker) * 50_000

    assert attack(server, chunks) == ENHANCE_YOUR_CALM


def test_flood_of_empty_data_frames(server):
    def chunks(attacker: RawClient):
        yield frame(HEADERS, END_HEADERS, 1, attacker.block([*GET[:2], (":path", "/echo"), GET[3]]))
        yield frame(DATA, 0, 1) * 50_000

    assert attack(server, chunks) == ENHANCE_YOUR_CALM


def test_a_ping_flood_whose_answers_are_never_read_costs_bounded_memory(server):
    """The flood budget ends it before the unread ACKs could pile up."""
    before = rss(server)
    sock = socket.create_connection(server.address, timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client = RawClient(server.address, sock=sock)
    sender = flood(client, (frame(PING, 0, 0, b"12345678") * 10_000 for _ in range(20)))
    sender.join(30)
    assert rss(server) - before < 64 * MIB
    served_meanwhile(server)
    sock.close()
