"""Test support: run the real server as a subprocess and talk to it over real sockets.

Every client socket made here has a timeout, every wait has a deadline, and
servers bind loopback on port 0.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geventsrv.bench import process
from geventsrv.bench.process import CLIENT_TIMEOUT
from geventsrv.bench.process import connect as connect  # re-exported for the tests
from geventsrv.bench.process import recv_exactly as recv_exactly

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess(process.ServerProcess):
    """``python -m geventsrv ARGS`` run from the project root, every warning shown.

    The harness itself is :class:`geventsrv.bench.process.ServerProcess`,
    shared with the lab and the soak.
    """

    def __init__(self, *args: str, **kwargs: Any) -> None:
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("env", {"PYTHONWARNINGS": "always"})
        # The whole suite runs against both I/O paths: tox sets this per environment.
        io = os.environ.get("GEVENTSRV_TEST_IO")
        if io and "command" not in kwargs and "--io" not in args:
            args = (*args, "--io", io)
        super().__init__(*args, **kwargs)


def abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def os_error(code: int) -> OSError:
    """The OSError a failing system call raises with ``code`` (for staged failures)."""
    return OSError(code, errno.errorcode.get(code, "?"))


def random_chunks(payload: bytes, rng: random.Random, largest: int = 70_000) -> Iterator[bytes]:
    """Split ``payload`` into pieces of random sizes from 1 byte to ``largest``."""
    view = memoryview(payload)
    offset = 0
    while offset < len(payload):
        size = rng.randint(1, largest)
        yield bytes(view[offset : offset + size])
        offset += size


def recv_until_eof(sock: socket.socket, bufsize: int = 65536) -> bytes:
    """Read until the peer's FIN; a reset raises."""
    parts = []
    while True:
        data = sock.recv(bufsize)
        if not data:
            return b"".join(parts)
        parts.append(data)


def send_chunks_in_thread(
    sock: socket.socket, chunks: Sequence[bytes] | Iterator[bytes], half_close: bool = True
) -> threading.Thread:
    """Send ``chunks`` from a thread (so the caller can read meanwhile), then SHUT_WR."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # reported by the joiner
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def echo_through(sock: socket.socket, payload: bytes, rng: random.Random) -> bytes:
    """Send ``payload`` in random chunks, half-close, and return all that came back."""
    sender = send_chunks_in_thread(sock, list(random_chunks(payload, rng)))
    # Odd read sizes too, but not 1-byte reads of megabytes.
    sizes = [1, 7, 4096, 65536] if len(payload) < 100_000 else [4093, 65536, 300_000]
    received = recv_until_eof(sock, bufsize=rng.choice(sizes))
    sender.join(CLIENT_TIMEOUT)
    assert not sender.errors, sender.errors  # type: ignore[attr-defined]
    return received


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
