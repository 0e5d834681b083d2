"""Prometheus metrics of a running server, read from its totals when scraped.

Nothing here runs per request. :class:`ServerCollector` reads the server's
plain counters (:class:`~geventsrv.stats.ServerStats`, the connections open)
each time ``/metrics`` is fetched, so serving with metrics on costs the echo
path nothing but the scrapes themselves. :class:`LoopMonitor` is the one
extra greenlet: it wakes every 100 ms and measures how late it woke, which is
how long the hub was kept from running anything else (a handler that
computed without yielding, a blocking call that was not made cooperative).

prometheus_client is an optional dependency (``pip install geventsrv[metrics]``);
:func:`require_prometheus` turns its absence into one clear message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gevent

from geventsrv import __version__
from geventsrv.config import ConfigError
from geventsrv.stats import Durations

if TYPE_CHECKING:
    from geventsrv.servergroup import ServerGroup

#: How often the loop monitor wakes, and from what lateness a wake-up counts
#: as the hub having been blocked (gevent's own monitor thread uses 0.1 s).
LOOP_INTERVAL = 0.1
BLOCKED_AFTER = 0.1
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def require_prometheus() -> None:
    """Raise :class:`~geventsrv.config.ConfigError` if prometheus_client is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(
            "metrics", "needs prometheus_client: pip install 'geventsrv[metrics]'"
        ) from None


class LoopMonitor:
    """Measures the event loop's lag: how late a 100 ms timer fires.

    A lag of :data:`BLOCKED_AFTER` or more counts as the hub having been
    blocked; ``blocked`` and ``blocked_seconds`` say how often and how long.
    """

    def __init__(self, interval: float = LOOP_INTERVAL) -> None:
        self.interval = interval
        self.lags = Durations(LAG_BUCKETS, [0] * (len(LAG_BUCKETS) + 1))
        self.blocked = 0
        self.blocked_seconds = 0.0
        self.worst = 0.0
        self._greenlet: gevent.Greenlet[[], None] | None = None

    def start(self) -> LoopMonitor:
        self._greenlet = gevent.spawn(self.run)
        return self

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def run(self) -> None:
        while True:
            due = time.monotonic() + self.interval
            gevent.sleep(self.interval)
            self.record(time.monotonic() - due)

    def record(self, lag: float) -> None:
        lag = max(lag, 0.0)
        self.lags.observe(lag)
        self.worst = max(self.worst, lag)
        if lag >= BLOCKED_AFTER:
            self.blocked += 1
            self.blocked_seconds += lag


#: Why UDP datagrams were not echoed, as labelled, and the counter of each.
DROPPED = {"loop_guard": "dropped", "rate": "limited", "denied": "denied", "send_failed": "errors"}


class ServerCollector:
    """A prometheus_client collector over a process's listeners, summed.

    ``server`` is a :class:`~geventsrv.servergroup.ServerGroup`.
    """

    def __init__(self, server: ServerGroup, loop: LoopMonitor) -> None:
        self.server = server
        self.loop = loop

    def describe(self) -> list[Any]:
        return []  # collected fresh at every scrape; no fixed description needed

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        server, stats = self.server, self.server.stats
        config = server.config
        info = GaugeMetricFamily(
            "geventsrv_build_info",
            "Always 1; the labels say which geventsrv and how it serves.",
            labels=["version", "mode", "io"],
        )
        info.add_metric([__version__, config.mode, config.io], 1)
        yield info
        yield GaugeMetricFamily(
            "geventsrv_ready",
            "1 while accepting and not stopping (what /readyz answers), else 0.",
            value=1 if server.ready else 0,
        )
        yield GaugeMetricFamily(
            "geventsrv_connections_open", "Connections open now.", value=server.connection_count
        )
        yield CounterMetricFamily(
            "geventsrv_connections_accepted", "Connections accepted.", value=stats.accepted
        )
        closed = CounterMetricFamily(
            "geventsrv_connections_closed", "Connections closed, by reason.", labels=["reason"]
        )
        for reason, count in stats.closed.items():
            closed.add_metric([reason], count)
        yield closed
        received, sent = server.open_bytes()
        yield CounterMetricFamily(
            "geventsrv_received_bytes",
            "Bytes received from clients over TCP; open connections included.",
            value=stats.bytes_received + received,
        )
        yield CounterMetricFamily(
            "geventsrv_sent_bytes",
            "Bytes sent to clients over TCP; open connections included.",
            value=stats.bytes_sent + sent,
        )
        yield _histogram(
            HistogramMetricFamily,
            "geventsrv_connection_duration_seconds",
            "How long closed connections lasted.",
            stats.durations,
        )
        errors = CounterMetricFamily(
            "geventsrv_accept_errors", "accept() failures, by errno.", labels=["errno"]
        )
        for name, count in sorted(stats.accept_errors_by_errno.items()):
            errors.add_metric([name], count)
        yield errors
        udp = list(server.datagram_services)
        if udp:
            yield CounterMetricFamily(
                "geventsrv_udp_datagrams_echoed",
                "UDP datagrams echoed.",
                value=sum(service.echoed for service in udp),
            )
            dropped = CounterMetricFamily(
                "geventsrv_udp_datagrams_dropped", "UDP datagrams not echoed.", labels=["reason"]
            )
            for why, attribute in DROPPED.items():
                dropped.add_metric([why], sum(getattr(service, attribute) for service in udp))
            yield dropped
        # A mode with metrics of its own (http: requests by method and status).
        for handler in server.handlers:
            mode_metrics = getattr(handler, "collect_metrics", None)
            if mode_metrics is not None:
                yield from mode_metrics()
        loop = self.loop
        yield _histogram(
            HistogramMetricFamily,
            "geventsrv_loop_lag_seconds",
            "How late a 100 ms timer fired: time the hub could not run anything else.",
            loop.lags,
        )
        yield CounterMetricFamily(
            "geventsrv_loop_blocked",
            f"Times the hub was blocked {BLOCKED_AFTER:g} s or more.",
            value=loop.blocked,
        )
        yield CounterMetricFamily(
            "geventsrv_loop_blocked_seconds",
            f"Seconds the hub spent blocked, counting blocks of {BLOCKED_AFTER:g} s or more.",
            value=loop.blocked_seconds,
        )


def _histogram(kind: Any, name: str, documentation: str, durations: Durations) -> Any:
    return kind(name, documentation, buckets=durations.cumulative(), sum_value=durations.total)


def server_registry(server: ServerGroup, loop: LoopMonitor) -> Any:
    """A registry with the server's metrics and the process's (memory, CPU, descriptors)."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server, loop))
    ProcessCollector(registry=registry)
    return registry


# -- one /metrics for every worker -------------------------------------------------


def fetch_unix(path: str, target: str = "/metrics", timeout: float = 2.0) -> str:
    """GET ``target`` from the HTTP endpoint on Unix socket ``path``; the body as text.

    Raises ``OSError`` (the worker is gone or restarting) or ``ValueError``
    (it answered something other than 200).
    """
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: worker\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        raise ValueError(f"worker endpoint answered {head[:40]!r}")
    return body.decode()


class WorkersCollector:
    """The supervisor's collector: each live worker's metrics, labelled ``worker="N"``.

    ``sources()`` gives ``{worker id: Unix socket path}`` for the workers
    running now, so a dead worker's series vanish with it. A worker that does
    not answer (restarting) is left out of that scrape.
    """

    def __init__(self, sources: Any, restarts: Any) -> None:
        self.sources = sources
        self.restarts = restarts

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
        from prometheus_client.parser import text_string_to_metric_families

        merged: dict[str, Any] = {}
        answered = 0
        for worker, path in sorted(self.sources().items()):
            try:
                text = fetch_unix(path)
            except (OSError, ValueError):
                continue
            answered += 1
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = dict(sample.labels, worker=str(worker))
                    into.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield GaugeMetricFamily(
            "geventsrv_workers_answering",
            "Workers whose metrics this scrape gathered.",
            value=answered,
        )
        restarts = CounterMetricFamily(
            "geventsrv_worker_restarts", "Workers restarted after dying.", labels=["worker"]
        )
        for worker, count in sorted(self.restarts().items()):
            restarts.add_metric([str(worker)], count)
        yield restarts
        yield from merged.values()


def workers_registry(sources: Any, restarts: Any) -> Any:
    """The supervisor's registry: :class:`WorkersCollector` and the supervisor's own process."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector(sources, restarts))
    ProcessCollector(registry=registry, namespace="geventsrv_supervisor")
    return registry
