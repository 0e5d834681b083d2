"""A server's running totals: plain integers, updated as connections close, read on demand.

The hot path never touches these: a request costs no counting here (bytes
are counted by the handler in ``conn.bytes_received`` and ``conn.bytes_sent``,
which it keeps anyway).
A connection adds to them once, when it closes; :mod:`geventsrv.metrics`
turns them into Prometheus metrics when scraped.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal, get_args

#: Why connections end. ``eof``: the client closed its side; ``reset``: the
#: connection broke (reset, broken pipe, a TLS error mid-stream); ``idle``: no
#: progress for the idle timeout; ``error``: a handler bug; ``refused``: closed
#: before serving (bad or late PROXY header, failed TLS handshake, a proxy
#: not allowed); ``denied``: not allowed by ``--allow``/``--deny``; ``limit``:
#: the client held ``--max-conns-per-client`` already; ``rate``: the client
#: opened connections faster than ``--accept-rate-per-client``; ``shutdown``:
#: still open at the drain deadline.
CloseReason = Literal[
    "eof", "reset", "idle", "error", "refused", "denied", "limit", "rate", "shutdown"
]  # fmt: skip
#: Why the gate turns a client away: the close reasons it gives.
Refusal = Literal["denied", "limit", "rate"]
CLOSE_REASONS: tuple[CloseReason, ...] = get_args(CloseReason)
REFUSALS: tuple[Refusal, ...] = get_args(Refusal)

#: Upper bounds (seconds) of the connection-duration buckets: 1 ms to 1 hour.
DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip


@dataclass
class Durations:
    """A histogram of connection durations, in Prometheus's cumulative-bucket sense on export."""

    bounds: tuple[float, ...] = DURATION_BUCKETS
    #: Per-bucket (not cumulative) counts; the last is for durations past every bound.
    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(upper bound, count of observations <= it)...]``, ending with ``+Inf``."""
        running = 0
        buckets = []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


@dataclass
class ServerStats:
    """Running totals of one :class:`~geventsrv.server.EchoServer`."""

    accepted: int = 0
    #: Bytes received and sent by connections already closed (open ones hold their own).
    bytes_received: int = 0
    bytes_sent: int = 0
    #: Connections closed, by reason (:data:`CLOSE_REASONS`).
    closed: dict[CloseReason, int] = field(default_factory=lambda: dict.fromkeys(CLOSE_REASONS, 0))
    #: Failures of accept() that were not about one queued connection.
    accept_errors: int = 0
    #: Every failure of accept(), by errno name (``EMFILE``...), queued connections' included.
    accept_errors_by_errno: dict[str, int] = field(default_factory=dict)
    durations: Durations = field(default_factory=Durations)
