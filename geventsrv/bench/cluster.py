"""The cluster: B geventsrv hosts behind HAProxy, and what happens to them under load.

:class:`Cluster` brings up the network (:mod:`geventsrv.bench.hosts`), one
geventsrv per host (``--workers W --mode info --proxy-protocol v2 --metrics
--shutdown-delay``), and HAProxy in front: TCP mode, ``send-proxy-v2``,
``balance leastconn`` (or roundrobin), health checks of each host's
``/readyz``, ``option redispatch``. Its HAProxy configuration is
:func:`haproxy_config`, the same one ``contrib/haproxy/geventsrv.cfg`` ships.

The scenarios (:func:`steady`, :func:`balancer_cost`, :func:`rolling`,
:func:`failover`) drive it with locust, :func:`raw_rate` with the lab's C load
generator; each returns its figures and events, and
:mod:`geventsrv.bench.clusterreport` judges them against the targets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geventsrv import procstats
from geventsrv.bench import hosts
from geventsrv.bench.distload import LocustRun
from geventsrv.bench.haproxy import Backend, HAProxy, free_port, render
from geventsrv.supervisor import metrics_dirs_of
from geventsrv.testing.process import GEVENTSRV, ServerProcess

ECHO_PORT = 7007
METRICS_PORT = 9100
#: Backend lines HAProxy needs besides the servers: readiness checks, and a
#: connection to a host that just died is retried on another one.
CHECKS = """\
option httpchk GET /readyz
http-check expect status 200
option redispatch
retries 3"""


@dataclass(frozen=True)
class Settings:
    """The cluster's shape (hosts, workers, network, balance), its load (locust users and
    workers, message size, echoes per connection) and its timings (shutdown delay, drain
    timeout, HAProxy's check interval, fall and rise)."""

    hosts: int = 3
    workers: int = 2
    network: str = "auto"
    balance: str = "leastconn"
    users: int = 30
    load_workers: int = 2
    size: int = 1024
    requests_per_connection: int = 50
    shutdown_delay: float = 2.0
    drain_timeout: float = 10.0
    check_interval: float = 0.5
    fall: int = 2
    rise: int = 2
    #: The hosts' --mode: ``info`` for the locust users (they learn the host from
    #: it), ``echo`` for the C load generator (which checks every byte it gets).
    mode: str = "info"

    @property
    def detection(self) -> float:
        """Seconds HAProxy takes at most to mark a dead host down: interval x fall."""
        return self.check_interval * self.fall


def server_line_options(settings: Settings, metrics_port: int) -> str:
    millis = round(settings.check_interval * 1000)
    return (
        f"send-proxy-v2 check port {metrics_port} inter {millis}ms "
        f"fall {settings.fall} rise {settings.rise}"
    )


def backends(
    addresses: list[tuple[str, int]], metrics_ports: list[int], settings: Settings
) -> list[Backend]:
    """HAProxy's server lines for hosts at ``addresses`` checked on ``metrics_ports``."""
    return [
        Backend(address, server_line_options(settings, port))
        for address, port in zip(addresses, metrics_ports, strict=True)
    ]


def haproxy_config(
    addresses: list[tuple[str, int]],
    metrics_ports: list[int],
    front: tuple[str, int],
    stats: Path,
    settings: Settings,
) -> str:
    """HAProxy's configuration for these hosts (what the cluster runs and contrib ships)."""
    servers = backends(addresses, metrics_ports, settings)
    return render(servers, front, stats, CHECKS, balance=settings.balance)


class Host:
    """One geventsrv "host": its address, its ports, its process (restartable)."""

    def __init__(self, index: int, network: hosts.Network, settings: Settings) -> None:
        self.index = index
        self.name = f"host{index + 1}"
        self.network = network
        self.settings = settings
        self.address = network.addresses[index]
        if network.kind == "netns":  # a host of its own: the usual ports
            self.port, self.metrics_port = ECHO_PORT, METRICS_PORT
        else:
            self.port, self.metrics_port = free_port(self.address), free_port(self.address)
        self.proc: ServerProcess | None = None

    @property
    def label(self) -> str:
        """How the info line names this host (its ``local`` field)."""
        return f"{self.address}:{self.port}"

    def flags(self) -> list[str]:
        s = self.settings
        allowed = "127.0.0.0/8" if self.network.kind == "loopback" else self.network.gateway
        return [
            *("--host", self.address, "--port", str(self.port)),
            *("--workers", str(s.workers), "--mode", s.mode),
            *("--proxy-protocol", "v2", "--proxy-allow-from", allowed),
            *("--metrics", f"{self.address}:{self.metrics_port}"),
            *("--shutdown-delay", str(s.shutdown_delay), "--drain-timeout", str(s.drain_timeout)),
            # Every connection comes from the load machine's one address.
            *("--max-conns-per-client", "0"),
        ]

    def start(self) -> None:
        command = self.network.command(self.index, GEVENTSRV)
        self.proc = ServerProcess(
            *self.flags(), command=command, listeners=self.settings.workers, preexec_fn=os.setsid
        )
        self.proc.wait_listening()

    def terminate(self) -> None:
        """SIGTERM: not ready at once, accepting for the shutdown delay, then draining."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL to the host's every process at once, as when a machine dies."""
        if self.proc is None or self.proc.proc.poll() is not None:
            return
        # Workers first: killed, the supervisor could not start replacements.
        for victim in reversed(procstats.process_tree(self.proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        self.proc.wait(10)
        # What its supervisor would have removed on its way out.
        for leftover in metrics_dirs_of(self.proc.pid):
            shutil.rmtree(leftover, ignore_errors=True)

    def scrape(self) -> str:
        url = f"http://{self.address}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def counters(self) -> dict[str, int]:
        """Connections accepted and bytes received so far (all workers), from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        totals = {"geventsrv_connections_accepted": 0.0, "geventsrv_received_bytes": 0.0}
        for family in text_string_to_metric_families(self.scrape()):
            if family.name in totals:
                totals[family.name] += sum(
                    sample.value for sample in family.samples if sample.name.endswith("_total")
                )
        return {
            "connections": int(totals["geventsrv_connections_accepted"]),
            "bytes": int(totals["geventsrv_received_bytes"]),
        }

    def close(self) -> None:
        if self.proc is not None:
            self.kill()


class Cluster:
    """Network, hosts and HAProxy, all up; :meth:`close` takes everything down."""

    def __init__(
        self,
        settings: Settings,
        directory: Path,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.progress = progress
        self.events: list[dict[str, Any]] = []
        self.hosts: list[Host] = []
        self.haproxy: HAProxy | None = None
        self.network = hosts.open_network(settings.network, settings.hosts)
        try:
            self.hosts = [Host(i, self.network, settings) for i in range(settings.hosts)]
            for host in self.hosts:
                host.start()
            servers = backends(
                [(h.address, h.port) for h in self.hosts],
                [h.metrics_port for h in self.hosts],
                settings,
            )
            self.haproxy = HAProxy(directory, servers, CHECKS, balance=settings.balance)
            self.wait_up(self.hosts, 20)
        except BaseException:
            self.close()
            raise

    @property
    def labels(self) -> dict[str, str]:
        """Each host's name by how the info line names it (``address:port``)."""
        return {host.label: host.name for host in self.hosts}

    @property
    def front(self) -> tuple[str, int]:
        assert self.haproxy is not None
        return self.haproxy.front

    def mark(self, what: str, host: Host) -> None:
        """Note an event on the timeline (and say it)."""
        self.events.append({"time": time.time(), "event": what, "host": host.name})
        self.progress(f"  {host.name}: {what}")

    def status(self) -> dict[str, str]:
        """HAProxy's view of each host: ``UP``, ``DOWN``, ``UP 1/2``..."""
        assert self.haproxy is not None
        rows = self.haproxy.stat_rows()
        by_server = {row.get("svname"): row.get("status", "") for row in rows}
        return {host.name: by_server.get(f"s{host.index + 1}", "?") for host in self.hosts}

    def wait_up(self, which: list[Host], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.status()
            if all(states[host.name] == "UP" for host in which):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy does not see every host up: {states}")
            time.sleep(0.05)

    def wait_down(self, host: Host, timeout: float) -> float:
        """Seconds until HAProxy marks ``host`` down."""
        started = time.monotonic()
        while not self.status()[host.name].startswith("DOWN"):
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"HAProxy did not mark {host.name} down in {timeout:g} s")
            time.sleep(0.02)
        return time.monotonic() - started

    def load(
        self, name: str, limit: float, target: tuple[str, int] | None = None, workers: int = -1
    ) -> LocustRun:
        """Start locust (distributed unless ``workers`` is 0) against the balancer or ``target``."""
        s = self.settings
        settings = {
            "GEVENTSRV_CLUSTER_SIZE": str(s.size),
            "GEVENTSRV_CLUSTER_REQUESTS": str(s.requests_per_connection),
            "GEVENTSRV_CLUSTER_PROXY_LOCAL": "1" if target is not None else "0",
        }
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        return LocustRun(
            target or self.front,
            s.users,
            s.load_workers if workers < 0 else workers,
            directory,
            limit,
            settings,
        )

    def close(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for host in self.hosts:
            host.close()
        self.network.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def running(load: LocustRun) -> Iterator[LocustRun]:
    """Kill locust if the scenario fails before it stops the load itself."""
    try:
        yield load
    finally:
        load.kill()


def steady(cluster: Cluster, seconds: float) -> dict[str, Any]:
    """Load for ``seconds``; each host's share of requests (info replies) and connections
    (its /metrics)."""
    before = {host.name: host.counters()["connections"] for host in cluster.hosts}
    with running(cluster.load("steady", seconds + 30)) as load:
        load.wait_running()
        time.sleep(seconds)
        timeline = load.stop()
    accepted = {
        host.name: host.counters()["connections"] - before[host.name] for host in cluster.hosts
    }
    labels = cluster.labels
    requests = {labels.get(k, k): v for k, v in timeline.totals().items()}
    return {
        "seconds": seconds,
        "requests": requests,
        "connections": accepted,
        "timeline": timeline,
        "events": [],
    }


def raw_rate(cluster: Cluster, seconds: float, connections: int) -> dict[str, Any]:
    """The lab's C load generator through HAProxy (hosts in echo mode): requests/s, and
    each host's share of connections and of requests (bytes received / size, /metrics)."""
    from geventsrv.bench.load import start_load

    size = cluster.settings.size
    before = {host.name: host.counters() for host in cluster.hosts}
    load = start_load("c", cluster.front, connections, size, seed=1)
    connect_errors = load.ready()
    window_start = time.monotonic() + 0.5
    load.run(window_start, window_start + seconds)
    result = load.result()
    after = {host.name: host.counters() for host in cluster.hosts}
    return {
        "seconds": seconds,
        "connections": {n: after[n]["connections"] - before[n]["connections"] for n in after},
        "requests": {n: (after[n]["bytes"] - before[n]["bytes"]) // size for n in after},
        "requests_per_s": result.requests / seconds,
        "p50_us": result.histogram.percentile(0.50),
        "p99_us": result.histogram.percentile(0.99),
        "errors": result.errors + connect_errors,
        "mismatches": result.mismatches,
        "first_error": result.first_error,
        "events": [],
    }


def balancer_cost(cluster: Cluster, rounds: int, seconds: float) -> dict[str, Any]:
    """Mean echo time, requests/s and HAProxy's CPU per request, through HAProxy and
    straight to host1, in interleaved rounds (the same locust process and users)."""
    direct = cluster.hosts[0]
    runs: list[dict[str, Any]] = []
    for number in range(rounds):
        order = ["balancer", "direct"] if number % 2 == 0 else ["direct", "balancer"]
        for path in order:
            target = (direct.address, direct.port) if path == "direct" else None
            assert cluster.haproxy is not None
            name = f"cost-{number + 1}-{path}"
            with running(cluster.load(name, seconds + 30, target, workers=0)) as load:
                load.wait_running()
                started, cpu = time.time(), procstats.cpu_seconds(cluster.haproxy.pid)
                time.sleep(seconds)
                ended, cpu = time.time(), procstats.cpu_seconds(cluster.haproxy.pid) - cpu
                timeline = load.stop().between(started, ended)
            runs.append(
                {
                    "round": number + 1,
                    "path": path,
                    "mean_us": timeline.mean_ms() * 1000,
                    "requests_per_s": timeline.requests() / (ended - started),
                    "haproxy_cpu_us_per_request": cpu * 1e6 / max(1, timeline.requests()),
                    "failures": len(timeline.failures),
                }
            )
    return {"rounds": rounds, "seconds": seconds, "runs": runs}


def rolling(cluster: Cluster, warm: float, settle: float) -> dict[str, Any]:
    """Under load, each host in turn: SIGTERM, drained, started again, back in HAProxy."""
    s = cluster.settings
    per_host = s.shutdown_delay + s.drain_timeout + 30
    start_mark = len(cluster.events)
    with running(cluster.load("rolling", warm + settle + per_host * len(cluster.hosts))) as load:
        load.wait_running()
        began = time.time()
        time.sleep(warm)
        for host in cluster.hosts:
            cluster.mark("SIGTERM", host)
            host.terminate()
            cluster.wait_down(host, s.shutdown_delay + 5)
            cluster.mark("down in HAProxy", host)
            code = host.wait_stopped(s.shutdown_delay + s.drain_timeout + 10)
            cluster.mark(f"exited {code}", host)
            host.start()
            cluster.mark("started", host)
            cluster.wait_up([host], 20)
            cluster.mark("up in HAProxy", host)
            time.sleep(settle)
        timeline = load.stop().between(began, time.time())
    return {"timeline": timeline, "events": cluster.events[start_mark:]}


def failover(cluster: Cluster, warm: float, down_for: float, settle: float) -> dict[str, Any]:
    """Under load, the last host is SIGKILLed, stays down a while, and is started again."""
    s = cluster.settings
    victim = cluster.hosts[-1]
    start_mark = len(cluster.events)
    with running(cluster.load("failover", warm + down_for + settle + 60)) as load:
        load.wait_running()
        began = time.time()
        time.sleep(warm)
        cluster.mark("SIGKILL", victim)
        killed = time.time()
        victim.kill()
        detected = cluster.wait_down(victim, s.detection + 5)
        cluster.mark("down in HAProxy", victim)
        time.sleep(max(0.0, down_for - (time.time() - killed)))
        victim.start()
        cluster.mark("started", victim)
        cluster.wait_up([victim], 20)
        back = time.time()
        cluster.mark("up in HAProxy", victim)
        time.sleep(settle)
        ended = time.time()
        timeline = load.stop().between(began, ended)
    return {
        "timeline": timeline,
        "events": cluster.events[start_mark:],
        "victim": victim.label,
        "killed": killed,
        "detected_after": detected,
        "back": back,
        "ended": ended,
        "labels": cluster.labels,
    }


def python_can_run_locust() -> str | None:
    """Why locust cannot be run here, or ``None``."""
    import importlib.util

    if importlib.util.find_spec("locust") is None:
        return f"locust is not installed for {sys.executable} (pip install locust)"
    return None
