"""A deliberately broken echo server, to prove the load tests catch wrong echoes.

``python tests/broken_echo_server.py flip N``: every N-th reply has one byte
flipped. ``python tests/broken_echo_server.py close N``: each connection is closed
after echoing N bytes. Prints its port, then serves until killed. Plain threads,
no gevent: it must not share code with what it is testing.
"""

from __future__ import annotations

import itertools
import socket
import sys
import threading

MODE, N = sys.argv[1], int(sys.argv[2])
replies = itertools.count(1)


def serve(conn: socket.socket) -> None:
    echoed = 0
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            if MODE == "flip" and next(replies) % N == 0:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            if MODE == "close" and echoed + len(data) >= N:
                conn.sendall(data[: N - echoed])
                return
            try:
                conn.sendall(data)
            except OSError:
                return
            echoed += len(data)


listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    client, _ = listener.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
