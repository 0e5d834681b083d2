"""Run a server as a process: open-file limit, shutdown signals, metrics, systemd.

:func:`serve` is what ``python -m geventsrv`` runs (and what a program that
embeds geventsrv can call): it prepares the process, starts its listeners
(a :class:`~geventsrv.servergroup.ServerGroup`: the server's own and each
``--listen``) and its metrics endpoint, when asked,
and turns signals into a graceful stop: not ready at once, still accepting
for the shutdown delay, then a drain.
"""

from __future__ import annotations

import logging
import resource
import signal
from typing import Any

import gevent
from gevent.event import Event

from geventsrv import exitcodes, modes
from geventsrv.addresses import format_address
from geventsrv.config import Config, ConfigError
from geventsrv.servergroup import ServerGroup
from geventsrv.systemd import Notifier, activated_sockets

log = logging.getLogger(__name__)

#: Descriptors kept for the process's own use beyond one per connection.
SPARE_DESCRIPTORS = 64


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit).

    Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


class ShutdownSignals:
    """SIGINT/SIGTERM: the first drains, the second forces. SIGUSR1 logs the status line.

    The watchers only note the signal and hand the work to a ``handle_*``
    method running in a greenlet of its own, so it may wait. Uses gevent's
    signal watchers; the previous Python-level handlers are put back on exit.
    """

    SHUTDOWN = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, server: ServerGroup, notifier: Notifier | None = None) -> None:
        self.server = server
        self.notifier = notifier or Notifier({})
        self.received = 0
        self.forced = False
        self._force = Event()
        self._saved: dict[int, Any] = {}
        self._watchers: list[Any] = []

    def __enter__(self) -> ShutdownSignals:
        for signum in (*self.SHUTDOWN, signal.SIGUSR1):
            self._saved[signum] = signal.getsignal(signum)
            self._watchers.append(gevent.signal_handler(signum, self._on_signal, signum))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGUSR1:
            self.handle_usr1()
        else:
            self.received += 1
            self.handle_shutdown(signal.Signals(signum).name)

    def handle_usr1(self) -> None:
        self.server.log_status()

    def handle_shutdown(self, name: str) -> None:
        if self.received == 1:
            delay = self.server.config.shutdown_delay
            self.server.announce_stop()  # /readyz: 503 from now on
            self.notifier.send("STOPPING=1", f"STATUS={name} received: stopping")
            if delay:
                log.info(
                    "%s received: not ready; accepting for %g s more, then draining "
                    "(send again to force)",
                    name,
                    delay,
                )
                if self._force.wait(delay):
                    return  # a second signal took over
            else:
                log.info("%s received: shutting down (send again to force)", name)
            self.server.stop()
        else:
            self.forced = True
            self._force.set()
            log.warning("%s received again: closing every connection now", name)
            self.server.stop(0)


def serve(config: Config | None = None) -> int:
    """Run a server until SIGINT or SIGTERM, as ``python -m geventsrv`` does; the exit code.

    The first signal stops accepting and drains open connections for up to
    ``config.drain_timeout`` seconds; a second one closes them at once.
    Returns 0 (:data:`~geventsrv.exitcodes.OK`) if the shutdown was clean, 4
    (:data:`~geventsrv.exitcodes.FORCED`) if a second signal forced it, so that
    ``sys.exit(serve(config))`` ends a program as the command line does.
    Raises :class:`~geventsrv.listen.ListenError` or
    :class:`~geventsrv.server.NotPatchedError` if the server cannot start.
    """
    config = (config or Config()).validate()
    limit = raise_open_file_limit(config.max_conns + SPARE_DESCRIPTORS)
    if limit < config.max_conns + 16:
        log.warning(
            "open-file limit is %d, below max-conns %d: past about %d connections "
            "accept() will fail and back off until descriptors free",
            limit,
            config.max_conns,
            max(limit - 16, 0),
        )
    sockets = activated_sockets()
    if sockets is not None and sockets.udp is not None and not modes.get(config.mode).serves_udp:
        raise ConfigError(
            "mode", f"socket activation passed a UDP socket; {config.mode} mode is TCP only"
        )
    server = ServerGroup(config, sockets)
    notifier = Notifier()
    # Handlers go in before the socket is bound: a caller that sees the
    # "listening" line may signal at once, and must get a graceful stop.
    with ShutdownSignals(server, notifier) as signals:
        server.start()
        endpoint = start_endpoint(server)
        status = gevent.spawn(report_status, server, notifier) if notifier.enabled else None
        try:
            server.serve_forever()
        finally:
            if status is not None:
                status.kill()
            if endpoint is not None:
                endpoint.close()
    return exitcodes.FORCED if signals.forced else exitcodes.OK


#: Seconds between two STATUS= updates to systemd.
STATUS_INTERVAL = 5.0


def report_status(server: ServerGroup, notifier: Notifier) -> None:
    """Tell systemd the server is ready, then what it serves, every few seconds."""
    where = format_address(*server.address)
    notifier.send("READY=1", f"STATUS=listening on {where}")
    while True:
        gevent.sleep(STATUS_INTERVAL)
        notifier.send(
            f"STATUS={server.connection_count} connection(s) open, "
            f"{server.stats.accepted} served, on {where}"
        )


def start_endpoint(server: ServerGroup) -> Any:
    """The server's ``/metrics``, ``/healthz``, ``/readyz`` endpoint, if its config asks for one."""
    config = server.config
    if config.metrics is None and config.metrics_socket is None:
        return None
    from prometheus_client import generate_latest

    from geventsrv.httpd import Endpoint, HealthApp
    from geventsrv.metrics import LoopMonitor, server_registry

    registry = server_registry(server, LoopMonitor().start())
    app = HealthApp(lambda: generate_latest(registry), lambda: None if server.ready else "stopping")
    return Endpoint(app, config.metrics, config.metrics_socket)
