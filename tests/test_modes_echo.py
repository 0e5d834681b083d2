"""The echo and upper handlers, in-process, on real socket pairs (plain blocking sockets)."""

from __future__ import annotations

import socket
import threading

import pytest
from support import recv_until_eof

from geventsrv.connection import Connection
from geventsrv.modes.echo import echo, upper


def run_handler(handler, payload: bytes) -> tuple[bytes, Connection]:
    """Feed ``payload`` to ``handler`` over a socketpair, half-close, return what came back.

    The handler's side is closed when the handler returns, as the server does,
    so reading to EOF also proves the handler returned.
    """
    client, server_side = socket.socketpair()
    for sock in (client, server_side):
        sock.settimeout(10)
    conn = Connection(server_side, "pair")

    def serve() -> None:
        handler(conn)
        server_side.close()

    def feed() -> None:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)

    threads = [threading.Thread(target=serve), threading.Thread(target=feed)]
    for thread in threads:
        thread.start()
    received = recv_until_eof(client)
    for thread in threads:
        thread.join(10)
    client.close()
    return received, conn


@pytest.mark.parametrize("size", [0, 1, 65536, 300_000])
def test_echo_returns_input_and_counts_it(rng, size):
    payload = rng.randbytes(size)
    received, conn = run_handler(echo, payload)
    assert received == payload
    assert conn.bytes_received == conn.bytes_sent == size


def test_upper_changes_only_ascii_lowercase():
    payload = bytes(range(256))
    received, conn = run_handler(upper, payload)
    expected = bytes(b - 32 if 97 <= b <= 122 else b for b in payload)
    assert received == expected
    assert conn.bytes_received == conn.bytes_sent == 256


def test_handler_returns_when_the_client_half_closes():
    received, _ = run_handler(echo, b"bye")
    assert received == b"bye"
