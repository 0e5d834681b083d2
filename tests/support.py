"""Test support: run the real server as a subprocess and talk to it over real sockets.

Every client socket made here has a timeout, every wait has a deadline, and
servers bind loopback on port 0.
"""

from __future__ import annotations

import contextlib
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

from geventsrv.testing import process
from geventsrv.testing.process import CLIENT_TIMEOUT
from geventsrv.testing.process import connect as connect  # re-exported for the tests
from geventsrv.testing.process import recv_exactly as recv_exactly

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess(process.ServerProcess):
    """``python -m geventsrv ARGS`` run from the project root, every warning shown.

    The harness itself is :class:`geventsrv.testing.process.ServerProcess`,
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


def scraped(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's ``/metrics`` on ``port``, read with prometheus_client's parser: each
    sample's value by its name and its labels, sorted."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def free_port() -> int:
    """A loopback port free right now (for tools that need a number, not port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
    parts: list[bytes] = []
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


# -- system tools the tests drive (openssl, socat, ncat, haproxy) -----------------

_apt_updated = False


def apt_install(package: str, missing: str) -> str:
    """Install Debian's ``package`` (updating the lists once per run if the first try fails);
    return the last line apt-get printed, for a skip message.

    Installs only where that is possible (root, ``apt-get``); otherwise the
    calling test is skipped with ``missing``, the reason, never silently.
    """
    import shutil
    import subprocess

    import pytest

    global _apt_updated
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{missing} (Debian package {package}) and cannot be installed here")
    install = ["apt-get", "install", "-y", "-qq", package]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0 and not _apt_updated:
        _apt_updated = True
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
    return tail[0]


def require_tool(command: str, package: str) -> str:
    """The path of ``command``, installing Debian's ``package`` first if it is missing
    (:func:`apt_install`); the calling test is skipped with the reason where it cannot be."""
    import shutil

    import pytest

    found = shutil.which(command)
    if found:
        return found
    said = apt_install(package, f"{command!r} is not installed")
    found = shutil.which(command)
    if not found:
        pytest.skip(f"{command!r} is missing and installing {package} failed: {said}")
    return found


# -- a TLS client that can half-close: close_notify, then FIN ------------------------


class TlsClient:
    """A TLS client over a plain socket through memory BIOs, one thread, every step explicit.

    Python's ``SSLSocket`` cannot send close_notify and keep reading, nor send
    a FIN after it; over BIOs the test decides each record's fate, as a real
    peer's TLS stack would.
    """

    def __init__(self, address: tuple[str, int], context: Any, server_hostname: str) -> None:
        import ssl

        self.ssl = ssl
        self.sock = connect(address)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        #: Whether the server's close_notify arrived before its FIN.
        self.close_notify_received = False

    def handshake(self) -> TlsClient:
        while True:
            try:
                self.tls.do_handshake()
                break
            except self.ssl.SSLWantReadError:
                pass
            self._flush()
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("server closed during the handshake")
            self.incoming.write(data)
        self._flush()
        return self

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def echo(self, chunks: Sequence[bytes]) -> bytes:
        """Send ``chunks``, then close_notify and FIN; read until the server's FIN.

        Reads between chunks, so neither side's buffers fill whatever the size.
        """
        import selectors

        received: list[bytes] = []
        self.sock.setblocking(False)
        pending = bytearray()
        todo = list(chunks)
        finished_sending = False
        deadline = time.monotonic() + CLIENT_TIMEOUT * 4
        shut = False
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            while True:
                if not pending and todo:
                    self.tls.write(todo.pop(0))
                    pending += self.outgoing.read()
                elif not pending and not todo and not finished_sending:
                    with contextlib.suppress(self.ssl.SSLWantReadError):
                        self.tls.unwrap()  # writes close_notify; the server's comes later
                    pending += self.outgoing.read()
                    finished_sending = True
                if finished_sending and not pending and not shut:
                    self.sock.shutdown(socket.SHUT_WR)  # the FIN, after close_notify
                    shut = True
                wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
                selector.modify(self.sock, wanted)
                if time.monotonic() > deadline:
                    raise TimeoutError("TLS echo did not finish in time")
                for _, mask in selector.select(timeout=1.0):
                    if mask & selectors.EVENT_WRITE:
                        with contextlib.suppress(BlockingIOError):
                            del pending[: self.sock.send(pending)]
                    if mask & selectors.EVENT_READ:
                        data = self.sock.recv(262144)
                        if not data:
                            return b"".join(received)
                        self.incoming.write(data)
                        received.append(self._read_records())

    def _read_records(self) -> bytes:
        parts = []
        while True:
            try:
                parts.append(self.tls.read(65536))
            except self.ssl.SSLWantReadError:
                return b"".join(parts)
            except self.ssl.SSLZeroReturnError:
                self.close_notify_received = True
                return b"".join(parts)

    def close(self) -> None:
        self.sock.close()
