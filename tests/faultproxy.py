"""A fault-injecting TCP proxy for the tests, in the spirit of toxiproxy's toxics.

The proxy listens on 127.0.0.1 port 0 and relays every client to ``upstream``
through two threads, one per direction, applying its :class:`Faults` as it
goes. Plain threads and blocking sockets: the test process must stay
unpatched. Every socket has a timeout, so a stuck test ends on its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

from support import abort

TIMEOUT = 30.0


@dataclass(frozen=True)
class Faults:
    """What the proxy does to the bytes; the defaults pass them through untouched."""

    latency: float = 0.0  # seconds each chunk is held before it is forwarded
    slice_size: int = 0  # forward in segments of this many bytes (TCP_NODELAY), 0 = as read
    rate: int = 0  # bandwidth cap in bytes per second each way, 0 = none
    reset_after: int | None = None  # reset both sides once this many bytes went upstream
    slow_close: float = 0.0  # seconds between a side's FIN and passing it on
    blackhole: bool = False  # read and discard, forward nothing, close nothing: a dead peer


class FaultProxy:
    """Relays clients to ``upstream`` with ``faults``; use as a context manager."""

    def __init__(self, upstream: tuple[str, int], faults: Faults) -> None:
        self.upstream = upstream
        self.faults = faults
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.resets = 0
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._accepter.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._accepter.join(5)
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(TIMEOUT)
            server = socket.create_connection(self.upstream, timeout=TIMEOUT)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            pair = _Pair(self, client, server)
            threading.Thread(target=pair.pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=pair.pump, args=(server, client, False), daemon=True).start()


class _Pair:
    """One proxied connection: its two sockets and the bytes sent upstream so far."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.upstream_bytes = 0
        self.reset = False

    def pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        faults = self.proxy.faults
        closing = self.proxy._closing
        try:
            while not closing.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if self.reset:
                    return
                if faults.blackhole:
                    if not data:
                        closing.wait()  # never pass the close on either
                    continue
                if not data:
                    if faults.slow_close:
                        time.sleep(faults.slow_close)
                    target.shutdown(socket.SHUT_WR)
                    return
                if upstream and faults.reset_after is not None:
                    room = faults.reset_after - self.upstream_bytes
                    if room <= len(data):
                        self._send(target, data[:room], faults)
                        self._reset()
                        return
                    self.upstream_bytes += len(data)
                if faults.latency:
                    time.sleep(faults.latency)
                self._send(target, data, faults)
        except OSError:
            # The other direction reset the pair, or a side went away: pass it on.
            self._reset()

    @staticmethod
    def _send(target: socket.socket, data: bytes, faults: Faults) -> None:
        step = faults.slice_size or len(data)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            target.sendall(piece)
            if faults.rate:
                time.sleep(len(piece) / faults.rate)

    def _reset(self) -> None:
        """Abort both sides with RST (SO_LINGER 0), once."""
        if self.reset:
            return
        self.reset = True
        self.proxy.resets += 1
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                abort(sock)
