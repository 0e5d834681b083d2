"""Requests counted and logged: what ``/metrics`` and the access log say of the http mode.

The fronts call :meth:`Requests.finished` once per exchange, answered or
refused, whatever its version. Counting is a dictionary increment and a
histogram bucket: nothing here costs a request more than that, unless
``--access-log`` asks for a line per request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from geventsrv.stats import Durations

if TYPE_CHECKING:
    from geventsrv.http.exchange import Exchange

#: One line per request with ``--access-log`` (the server writes none per connection).
access_log = logging.getLogger("geventsrv.access")
#: The ``auth`` control's value in a query: what it names after the scheme is hidden.
CREDENTIALS_IN_QUERY = re.compile(rb"((?:^|[?&])auth=[^:&]*:)[^&#]*", re.IGNORECASE)
#: Methods counted by name in the metrics; any other is "other" (a client could
#: otherwise make a label of every method llhttp knows).
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
)
#: Upper bounds (seconds) of the request-duration buckets.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Requests:
    """The http mode's requests, counted by method, status class and HTTP version, and timed."""

    def __init__(self, log_each: bool) -> None:
        #: Whether to write one access-log line per request.
        self.log_each = log_each
        #: Requests answered, by (method, status class, version): what /metrics shows.
        self.counts: dict[tuple[str, str, str], int] = {}
        self.durations = Durations(REQUEST_BUCKETS, [0] * (len(REQUEST_BUCKETS) + 1))

    def finished(self, exchange: Exchange, seconds: float) -> None:
        """Count one exchange that is over (its status, as sent), and log it if asked.

        A tunnel's lifetime is not a request's duration: a tunnelled exchange is only
        counted, and a WebSocket (101) logs its own line when it ends.
        """
        request = exchange.request
        method = self.count(request.method, exchange.status, request.version)
        if not exchange.tunnelled:
            self.durations.observe(seconds)
        if self.log_each and exchange.status != 101:
            client = exchange.conn.client
            target = logged_target(request.target)
            status, received, version = exchange.status, exchange.received, request.version
            access_log.info(
                "%s: %s %s HTTP/%s %d, %d byte(s) in, %.3f s",
                client, method[:16], target, version, status, received, seconds,
                extra={"client": client, "method": method[:16], "target": target,
                       "version": version, "stream": request.stream_id, "status": status,
                       "received": received, "duration": round(seconds, 6)},
            )  # fmt: skip

    def count(self, method_bytes: bytes, status: int, version: str) -> str:
        """Count one request by method, status class and version; its method, as text."""
        method = method_bytes.decode("latin-1")
        key = (method if method in METHODS else "other", f"{status // 100}xx", version)
        self.counts[key] = self.counts.get(key, 0) + 1
        return method

    def collect_metrics(self) -> Iterator[Any]:
        """The Prometheus families of the requests, for the server's collector."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            "geventsrv_http_requests",
            "HTTP requests answered, by method, status class and HTTP version.",
            labels=["method", "status_class", "version"],
        )
        for (method, status_class, version), count in sorted(self.counts.items()):
            requests.add_metric([method, status_class, version], count)
        yield requests
        yield HistogramMetricFamily(
            "geventsrv_http_request_duration_seconds",
            "From a request's head to the end of its response.",
            buckets=self.durations.cumulative(),
            sum_value=self.durations.total,
        )


def logged_target(target: bytes) -> str:
    """A request's target as the access log shows it: at most 200 characters, and the
    credentials an ``auth`` control names hidden (a log is read by more people than a
    secret should be)."""
    if b"auth=" in target:
        target = CREDENTIALS_IN_QUERY.sub(rb"\1***", target)
    return target.decode("latin-1")[:200]
