"""The lab's closed-loop load generator: epoll, no gevent, no per-request allocation.

Each worker process holds a share of the connections. Every connection sends
a message of ``size`` bytes, waits until all ``size`` bytes are back, checks
them against what it sent, and sends the next: closed loop, so the offered load
adapts to the server. Messages are windows into one random pool, shifted for
every request, so consecutive messages differ and a stale or misrouted echo is
caught; replies are compared chunk by chunk as they arrive, so no
per-connection receive buffer is needed even at 10,000 connections.

Only requests that complete inside the measurement window count; latencies go
into a log-bucketed :class:`Histogram` (2% resolution), which merges across
processes.
"""

from __future__ import annotations

import errno
import math
import os
import random
import select
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

#: Histogram buckets per factor e of latency: 50 gives ~2% wide buckets.
BUCKETS_PER_E = 50
#: Enough buckets for latencies up to ~100 s.
BUCKET_COUNT = int(math.log(1e8) * BUCKETS_PER_E) + 1


@dataclass
class Histogram:
    """Latency counts in log-spaced microsecond buckets."""

    counts: list[int] = field(default_factory=lambda: [0] * BUCKET_COUNT)

    def add(self, microseconds: float) -> None:
        index = int(math.log(microseconds) * BUCKETS_PER_E) if microseconds > 1 else 0
        self.counts[min(index, BUCKET_COUNT - 1)] += 1

    def merge(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, fraction: float) -> float:
        """Latency (µs, bucket upper edge) below which ``fraction`` of samples fall."""
        wanted = fraction * self.total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if count and seen >= wanted:
                return math.exp((index + 1) / BUCKETS_PER_E)
        return float("nan")


@dataclass
class WorkerResult:
    """What one load process saw inside the window."""

    requests: int = 0
    bytes: int = 0
    errors: int = 0
    mismatches: int = 0
    connect_errors: int = 0
    first_error: str = ""
    cpu_seconds: float = 0.0
    histogram: Histogram = field(default_factory=Histogram)
    #: Connections that completed no request in the window: percentiles over
    #: completed requests cannot see them.
    unserved: int = 0
    #: Longest wait for a reply (s); one still unanswered at the window's end
    #: counts the time it had waited by then.
    longest_wait: float = 0.0
    #: Fewest and most requests one connection completed in the window.
    fewest_per_connection: int = 0
    most_per_connection: int = 0


def run_worker(address: tuple[str, int], connections: int, size: int, pipe: Pipe) -> None:
    """Process entry point: connect, report ready, run the window sent back, report.

    Protocol on ``pipe``: worker sends ``("ready", connect_errors)``; parent
    sends ``(window_start, window_end)`` as ``time.monotonic()`` values;
    worker sends ``("done", WorkerResult)``.
    """
    result = WorkerResult()
    socks = []
    for _ in range(connections):
        try:
            sock = socket.create_connection(address, timeout=30)
        except OSError as exc:
            result.connect_errors += 1
            result.first_error = result.first_error or f"connect: {exc}"
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    pipe.send(("ready", result.connect_errors))
    window_start, window_end = pipe.recv()
    try:
        _drive(socks, size, window_start, window_end, result)
    finally:
        for sock in socks:
            sock.close()
    pipe.send(("done", result))


def _drive(
    socks: list[socket.socket], size: int, window_start: float, window_end: float, result: Any
) -> None:
    pool = random.Random(os.getpid()).randbytes(2 * size)
    pool_view = memoryview(pool)
    scratch = bytearray(max(size, 65536))
    scratch_view = memoryview(scratch)
    epoll = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    # Per-connection state, indexed by fd: message offset, bytes sent, bytes
    # received, send time, requests completed in the window.
    top = max((s.fileno() for s in socks), default=0) + 1
    offset, sent, got, started = [0] * top, [0] * top, [0] * top, [0.0] * top
    served = [0] * top
    longest = 0.0
    histogram = result.histogram
    monotonic = time.monotonic
    IN, OUT = select.EPOLLIN, select.EPOLLOUT

    def start(fd: int, sock: socket.socket, now: float) -> None:
        offset[fd] = (offset[fd] + 4099) % size if size > 1 else 0
        got[fd] = 0
        started[fd] = now
        view = pool_view[offset[fd] : offset[fd] + size]
        try:
            sent[fd] = sock.send(view)
        except BlockingIOError:
            sent[fd] = 0
        epoll.modify(fd, IN | OUT if sent[fd] < size else IN)

    def drop(fd: int, reason: str, mismatch: bool = False) -> None:
        sock = by_fd.pop(fd)
        epoll.unregister(fd)
        sock.close()
        if mismatch:
            result.mismatches += 1
        else:
            result.errors += 1
        result.first_error = result.first_error or reason

    while monotonic() < window_start - 0.2:  # everyone starts together
        time.sleep(0.01)
    cpu_start = None
    now = monotonic()
    for sock in socks:
        fd = sock.fileno()
        by_fd[fd] = sock
        epoll.register(fd, IN)
        start(fd, sock, now)
    while by_fd:
        now = monotonic()
        if now >= window_end:
            break
        if cpu_start is None and now >= window_start:
            cpu_start = time.process_time()
        for fd, events in epoll.poll(0.05):
            conn = by_fd.get(fd)
            if conn is None:
                continue
            if events & OUT and sent[fd] < size:
                base = offset[fd]
                try:
                    sent[fd] += conn.send(pool_view[base + sent[fd] : base + size])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    drop(fd, f"send: {exc}")
                    continue
                if sent[fd] == size:
                    epoll.modify(fd, IN)
            if events & (IN | select.EPOLLERR | select.EPOLLHUP):
                want = size - got[fd]
                try:
                    count = conn.recv_into(scratch, want)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    drop(fd, f"recv: {errno.errorcode.get(exc.errno or 0, exc)}")
                    continue
                if not count:
                    drop(fd, "server closed the connection")
                    continue
                base = offset[fd] + got[fd]
                if scratch_view[:count] != pool_view[base : base + count]:
                    drop(fd, f"reply differs from request within bytes {got[fd]}..", True)
                    continue
                got[fd] += count
                if got[fd] == size:
                    done = monotonic()
                    if done >= window_start:
                        result.requests += 1
                        result.bytes += size
                        served[fd] += 1
                        histogram.add((done - started[fd]) * 1e6)
                        longest = max(longest, done - started[fd])
                    start(fd, conn, done)
    result.cpu_seconds = time.process_time() - (cpu_start or time.process_time())
    epoll.close()
    counts = [served[fd] for fd in by_fd]  # connections still open: dropped ones are errors
    result.unserved = sum(1 for count in counts if not count)
    result.fewest_per_connection = min(counts, default=0)
    result.most_per_connection = max(counts, default=0)
    ends = [window_end - started[fd] for fd in by_fd]
    result.longest_wait = max([longest, *ends])
