"""``--workers N``: N geventsrv processes on one port, and the supervisor that keeps them.

One process runs one hub on one core. To use more cores, the supervisor starts
N workers, each an ordinary ``python -m geventsrv`` with ``--reuse-port``:
each binds its own listening socket to the same address with SO_REUSEPORT, and
the kernel spreads new connections over them (by a hash of the connection's
addresses), so no process hands connections to another.

The supervisor:

* reserves the port first (a bound, never listening SO_REUSEPORT socket), so
  ``--port 0`` gives every worker the same port and a port in use fails at
  once with exit code 3;
* restarts a worker that dies, after 0.5 s doubling to 30 s while it keeps
  dying young (a worker that ran 10 s or more restarts after 0.5 s again);
  a worker that cannot start at all (bad arguments, cannot listen) stops the
  whole server with the worker's exit code;
* turns SIGINT or SIGTERM into SIGTERM for every worker, which drain as one
  server would (a second signal makes them close at once), and forwards
  SIGUSR1 (status);
* exits 0 once every worker has drained and exited 0; 4 if the stop was
  forced; 1 if a worker failed while draining.

With ``--metrics``, workers serve theirs on Unix sockets in a private
directory (``geventsrv-metrics-<pid>-*`` in the temporary directory, mode
0700). The supervisor removes it however it stops; a supervisor killed
outright cannot, so each supervisor starting removes the directories of
supervisors of the same user that are no longer running
(:func:`remove_stale_metrics_dirs`).

Workers run in their own session, so a terminal's Ctrl-C reaches them once,
through the supervisor; and each is told to get SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event

from geventsrv import exitcodes
from geventsrv.addresses import format_address
from geventsrv.config import Config
from geventsrv.flags import to_argv
from geventsrv.listen import open_listener

log = logging.getLogger(__name__)

RESTART_DELAY_MIN = 0.5
RESTART_DELAY_MAX = 30.0
#: A worker that ran this long was healthy: its next restart is quick again.
HEALTHY_AFTER = 10.0
_PR_SET_PDEATHSIG = 1


def worker_config(
    config: Config, port: int, worker_id: int, metrics_dir: str | None = None
) -> Config:
    """Worker ``worker_id``'s settings: the server's, one process, on ``port``, sharing it.

    With metrics on, the worker serves them on a Unix socket in ``metrics_dir``
    for the supervisor to gather; only the supervisor listens on ``--metrics``.
    """
    metrics_socket = metrics_socket_path(metrics_dir, worker_id) if metrics_dir else None
    return config.replace(
        port=port,
        reuse_port=True,
        workers=1,
        worker_id=worker_id,
        metrics=None,
        metrics_socket=metrics_socket,
    )


#: The private directory of supervisor ``<pid>``: ``geventsrv-metrics-<pid>-<random>``.
METRICS_DIR_PREFIX = "geventsrv-metrics-"
_METRICS_DIR = re.compile(re.escape(METRICS_DIR_PREFIX) + r"(\d+)-")


def metrics_dirs_of(pid: int) -> list[Path]:
    """The metrics directories supervisor ``pid`` made (normally one)."""
    return sorted(Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}{pid}-*"))


def remove_stale_metrics_dirs() -> int:
    """Remove this user's metrics directories whose supervisor is gone; how many."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(METRICS_DIR_PREFIX + "*"):
        match = _METRICS_DIR.match(path.name)
        try:
            if match is None or path.stat().st_uid != os.geteuid():
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        except OSError:  # gone meanwhile, or a process of someone else's
            continue
    return removed


def metrics_socket_path(metrics_dir: str, worker_id: int) -> str:
    return os.path.join(metrics_dir, f"worker-{worker_id}.sock")


def worker_command(
    config: Config, port: int, worker_id: int, metrics_dir: str | None = None
) -> list[str]:
    """The command line of worker ``worker_id``: its :func:`worker_config` as flags."""
    worker = worker_config(config, port, worker_id, metrics_dir)
    return [sys.executable, "-m", "geventsrv", *to_argv(worker)]


class RestartBackoff:
    """How long to wait before restarting a worker that died after running ``lived`` seconds.

    0.5 s, doubling to 30 s while the worker keeps dying young; a worker that
    ran :data:`HEALTHY_AFTER` seconds or more is restarted after 0.5 s again.
    """

    def __init__(self) -> None:
        self.delay = RESTART_DELAY_MIN

    def next_delay(self, lived: float) -> float:
        if lived >= HEALTHY_AFTER:
            self.delay = RESTART_DELAY_MIN
        delay = self.delay
        self.delay = min(self.delay * 2, RESTART_DELAY_MAX)
        return delay


def reserve_port(config: Config) -> socket.socket:
    """Bind (never listen) an SO_REUSEPORT socket on the address: fixes the port for all."""
    return open_listener(config.replace(reuse_port=True), listen=False)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the supervisor dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Looked up once, in the supervisor: between fork and exec only prctl() may run.
_LIBC = ctypes.CDLL(None, use_errno=True)


class Supervisor:
    """Keeps ``config.workers`` workers running until a signal; :meth:`run` gives the exit code."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.port = 0
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.signals = 0
        self.fatal_code = 0
        self.restarts: dict[int, int] = {}
        #: Where workers serve their metrics (a private directory), with --metrics.
        self.metrics_dir: str | None = None
        self._stopping = Event()

    def run(self) -> int:
        reservation = reserve_port(self.config)
        self.port = reservation.getsockname()[1]
        watchers = [
            gevent.signal_handler(signum, self._on_signal, signum)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
        ]
        log.info(
            "supervisor (pid %d): %d workers serving %s",
            os.getpid(),
            self.config.workers,
            format_address(self.config.host, self.port),
        )
        endpoint = None
        try:
            if self.config.metrics is not None:
                remove_stale_metrics_dirs()
                self.metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
                endpoint = self._start_endpoint()
            keepers = [
                gevent.spawn(self._keep_running, worker_id)
                for worker_id in range(1, self.config.workers + 1)
            ]
            gevent.joinall(keepers)
        finally:
            for watcher in watchers:
                watcher.cancel()
            reservation.close()
            if endpoint is not None:
                endpoint.close()
            if self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        codes = [keeper.value for keeper in keepers]
        log.info("supervisor: every worker has exited (exit codes %s)", codes)
        if self.fatal_code:
            return self.fatal_code
        if self.signals > 1 or exitcodes.FORCED in codes:
            return exitcodes.FORCED
        if all(code == exitcodes.OK for code in codes):
            return exitcodes.OK
        return exitcodes.INTERNAL_ERROR

    def _start_endpoint(self) -> Any:
        """``--metrics`` for every worker: /metrics gathers theirs, /readyz is the supervisor's."""
        from prometheus_client import generate_latest

        from geventsrv.httpd import Endpoint, HealthApp
        from geventsrv.metrics import workers_registry

        registry = workers_registry(self._metrics_sources, lambda: dict(self.restarts))
        app = HealthApp(lambda: generate_latest(registry), self.unready)
        return Endpoint(app, self.config.metrics)

    def unready(self) -> str | None:
        """``None`` when a balancer may send connections, otherwise why not.

        Ready means not stopping and at least one worker serving. A worker
        opens its metrics socket once it accepts, so a socket that answers
        means a worker that does; until then (at start, or while every worker
        restarts) /readyz says 503 and a balancer waits.
        """
        if self._stopping.is_set():
            return "stopping"
        for path in self._metrics_sources().values():
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1)
                try:
                    probe.connect(path)
                except OSError:
                    continue
                return None
        return "no worker serving yet"

    def _metrics_sources(self) -> dict[int, str]:
        assert self.metrics_dir is not None
        return {
            worker_id: metrics_socket_path(self.metrics_dir, worker_id)
            for worker_id, proc in self.workers.items()
            if proc.poll() is None
        }

    def _keep_running(self, worker_id: int) -> int:
        """Run worker ``worker_id``, restarting it when it dies, until the server stops."""
        backoff = RestartBackoff()
        command = worker_command(self.config, self.port, worker_id, self.metrics_dir)
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
            self.workers[worker_id] = proc
            code = proc.wait()
            if self._stopping.is_set():
                # A worker signalled before it installed its handlers had not
                # bound its socket yet: it held no connection, so it stopped clean.
                return exitcodes.OK if code == -signal.SIGTERM else code
            lived = time.monotonic() - started
            if code in exitcodes.CANNOT_RUN:
                log.error("worker %d cannot run (exit code %d); stopping", worker_id, code)
                self.fatal_code = code
                self._stop()
                return code
            self.restarts[worker_id] = self.restarts.get(worker_id, 0) + 1
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
            delay = backoff.next_delay(lived)
            log.warning(
                "worker %d (pid %d) %s after %.1f s; restarting in %g s",
                worker_id,
                proc.pid,
                how,
                lived,
                delay,
            )
            if self._stopping.wait(delay):
                return exitcodes.OK
        return exitcodes.OK

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGUSR1:
            self._forward(signum)
            return
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.info("%s received: draining every worker (send again to force)", name)
        else:
            log.warning("%s received again: workers close every connection now", name)
        self._stop()

    def _stop(self) -> None:
        # Workers treat SIGINT and SIGTERM alike once running; SIGTERM also
        # ends a worker still starting up without a KeyboardInterrupt.
        self._stopping.set()
        self._forward(signal.SIGTERM)

    def _forward(self, signum: int) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signum)


def supervise(config: Config) -> int:
    """Run ``config.workers`` workers on one port until SIGINT/SIGTERM; the exit code."""
    return Supervisor(config).run()
