"""The accept loop: one greenlet per connection, limits, back-off, idle reaping and drain.

Everything here is ordinary blocking-socket code. It becomes concurrent only
because ``gevent.monkey.patch_all()`` has replaced the ``socket`` module's
blocking calls with ones that park the calling greenlet; :meth:`EchoServer.start`
refuses to run without that, since unpatched it would serve one client at a time.
Binding lives in :mod:`geventsrv.listen`, the process around a server
(signals, limits) in :mod:`geventsrv.runner`.

Error handling
    A connection's failure (reset, broken pipe, idle timeout, even a bug in a
    handler) ends that connection only, with one debug line in the log.
    ``accept()`` failures are sorted by errno (:class:`AcceptErrors`): ones
    that concern the single connection being accepted are retried at once;
    running out of descriptors or memory backs off (doubling from
    :attr:`EchoServer.accept_backoff_min` to :attr:`EchoServer.accept_backoff_max`)
    with rate-limited log lines, and recovers by itself when resources free;
    a broken listening socket stops the server.

Idle connections
    A connection that moves no data in either direction for ``idle_timeout``
    seconds is closed by one :class:`IdleReaper` greenlet that looks at every
    connection's progress counters each quarter of the timeout (so it closes
    within 1.25x the timeout). The sockets themselves have no timeout: a
    per-socket timeout makes gevent arm and cancel a timer around every call
    that waits: in the lab that cost 5-15% more server CPU per 1 KiB request,
    and 0.8 KiB more memory per idle connection (the parked timer).

Resource handling
    At most ``max_conns`` connections are served at once: the accept loop
    takes a slot before it calls ``accept()``, so further clients wait in the
    kernel's listen backlog and are served, oldest first, as slots free.
    Every accepted socket is closed exactly once, by the greenlet that serves
    it or, for a greenlet killed before it ran, by :meth:`EchoServer.stop`.
"""

from __future__ import annotations

import collections
import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from geventsrv import modes, procstats
from geventsrv.config import Config, format_address
from geventsrv.connection import Connection, Handler, StreamSocket
from geventsrv.cooperative import CooperativeSocket
from geventsrv.listen import ListenError, Sockets, open_sockets
from geventsrv.udp import DatagramEcho

log = logging.getLogger(__name__)

__all__ = ["EchoServer", "IdleTimeout", "ListenError", "NotPatchedError"]

#: accept() errors that concern only the connection being accepted (it was
#: reset or aborted while queued): take the next one at once. Linux also
#: reports pending network errors of the new socket this way (accept(2)).
ACCEPT_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "EINTR",
        "EAGAIN",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
)
#: accept() errors that mean the process or system is out of a resource:
#: retrying at once would spin, so back off until descriptors or memory free.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors that mean the listening socket itself is gone.
ACCEPT_FATAL_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})


class IdleTimeout(TimeoutError):
    """Raised in a connection's greenlet when it made no progress for the idle timeout."""


class NotPatchedError(RuntimeError):
    """The process was not monkey-patched, so blocking calls would block every client."""


@dataclass
class ServerStats:
    """Running totals, updated as connections close."""

    accepted: int = 0
    bytes_echoed: int = 0
    closed_idle: int = 0
    closed_by_error: int = 0
    closed_at_stop: int = 0
    accept_errors: int = 0


def require_monkey_patched() -> None:
    """Raise :class:`NotPatchedError` unless gevent has patched ``socket``."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        raise NotPatchedError(
            "geventsrv serves clients with blocking socket calls and needs "
            "gevent.monkey.patch_all() to run first, before other imports "
            "(python -m geventsrv does this)"
        )


class RateLimitedLog:
    """Logs the first of a run of similar events at once, then at most one per interval.

    A line written after others were held back says how many.
    """

    def __init__(
        self,
        interval: float,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.logger = logger
        self.clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def __call__(self, level: int, message: str, *args: object) -> None:
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar suppressed)"
            args += (self._suppressed,)
        self.logger.log(level, message, *args)
        self._next = now + self.interval
        self._suppressed = 0


class AcceptErrors:
    """Sorts ``accept()`` failures and paces the retries.

    :meth:`failed` says how long to wait before the next ``accept()``: 0 for
    a failure of one queued connection, a back-off doubling from
    ``backoff_min`` to ``backoff_max`` while the process is out of
    descriptors or memory, ``None`` when the listening socket is gone.
    :meth:`succeeded` ends a back-off.
    """

    def __init__(self, backoff_min: float, backoff_max: float, log_line: RateLimitedLog) -> None:
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.log_line = log_line
        self.backoff = 0.0
        #: Failures that were not about one queued connection.
        self.count = 0

    def failed(self, exc: OSError, open_connections: int) -> float | None:
        code = exc.errno
        if code in ACCEPT_TRANSIENT_ERRNOS:
            log.debug("accept() of one connection failed: %s", exc)
            return 0.0
        self.count += 1
        if code in ACCEPT_FATAL_ERRNOS:
            log.error("listening socket failed: %s; stopping", exc)
            return None
        self.backoff = min(max(self.backoff * 2, self.backoff_min), self.backoff_max)
        self.log_line(
            logging.WARNING,
            "accept() failed: %s (%d connection(s) open); retrying in %g s",
            exc.strerror or exc,
            open_connections,
            self.backoff,
        )
        return self.backoff

    def succeeded(self) -> None:
        if self.backoff:
            log.info("accepting again")
            self.backoff = 0.0


class IdleReaper:
    """Closes connections whose progress counters stood still for ``timeout`` seconds.

    Keeps its own record of what it saw of each connection (the handlers'
    :class:`~geventsrv.connection.Connection` carries only the counters);
    :meth:`sweep` is one look at all of them, :meth:`run` sweeps every quarter
    of the timeout.
    """

    def __init__(
        self, timeout: float, connections: dict[gevent.Greenlet[[Connection], None], Connection]
    ) -> None:
        self.timeout = timeout
        self.connections = connections
        #: greenlet -> (the last ``bytes_echoed + progress`` seen, when first seen).
        self._seen: dict[object, tuple[int, float]] = {}

    def run(self) -> None:
        interval = self.timeout / 4
        while True:
            gevent.sleep(interval)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """Kill, with :class:`IdleTimeout`, every connection idle since ``timeout`` ago.

        Returns how many it killed.
        """
        killed = 0
        seen = self._seen
        for greenlet, conn in list(self.connections.items()):
            mark = conn.bytes_echoed + conn.progress
            last = seen.get(greenlet)
            if last is None or last[0] != mark:
                seen[greenlet] = (mark, now)
            elif now - last[1] >= self.timeout and greenlet:  # started, not dead
                seen[greenlet] = (mark, float("inf"))  # killed once is enough
                greenlet.kill(IdleTimeout, block=False)
                killed += 1
        if len(seen) > len(self.connections):
            for gone in [g for g in seen if g not in self.connections]:
                del seen[gone]
        return killed


class GreenletStarter:
    """Starts new connections' greenlets from the hub, up to a time budget per loop turn.

    Why not ``gevent.spawn()``: it queues each start as a hub callback, and the
    hub runs callbacks for at most its switch interval (5 ms) per loop turn,
    while under load one turn serves every ready socket first (a quarter of a
    second at 10,000 busy connections). Measured: 1,000 clients connecting
    while 10,000 others were busy waited 3.2-3.6 s (median) and up to 5.6 s for
    a first echo. Starting them all in the next turn instead (a timer each)
    ended that (0.45-0.75 s), but in a storm of 10,000 connects the accept
    loop then waited behind thousands of first echoes, the listen backlog
    overflowed, and clients retried their SYN a second later (first echoes up
    to 2.1 s, against 0.53 s with spawn()). A budget per turn serves both:
    the accept loop gets a turn at least every :attr:`budget` seconds, and new
    connections get :attr:`budget` seconds of every turn, however busy.
    """

    #: Seconds of each loop turn spent starting new connections' greenlets.
    budget = 0.02

    def __init__(self) -> None:
        self._pending: collections.deque[gevent.Greenlet[[Connection], None]] = collections.deque()
        self._timer: Any = gevent.get_hub().loop.timer(0.0)

    def start(self, greenlet: gevent.Greenlet[[Connection], None]) -> None:
        """Run ``greenlet`` (created, not started) in the next loop turn with time to spare."""
        self._pending.append(greenlet)
        if not self._timer.active:
            self._timer.start(self._run)

    def _run(self) -> None:
        # A timer callback runs in the hub: switching into a new greenlet runs
        # it until it first waits, and its wait switches back to here.
        pending = self._pending
        deadline = time.perf_counter() + self.budget
        while pending:
            greenlet = pending.popleft()
            if not greenlet.dead:  # not killed before its turn (a stop, say)
                greenlet.switch()
            if time.perf_counter() >= deadline:
                break
        if pending:
            self._timer.start(self._run)

    def close(self) -> None:
        self._timer.stop()
        self._timer.close()


class EchoServer:
    """A TCP server running ``config.mode`` on every accepted connection, one greenlet each.

    Use as a context manager, or call :meth:`start` then :meth:`serve_forever`
    (which returns once :meth:`stop` has finished, from another greenlet or a
    signal handler). Requires a monkey-patched process.
    """

    #: First pause after accept() runs out of a resource; doubled while it repeats.
    accept_backoff_min = 0.01
    #: Longest pause between two accept() attempts while out of resources.
    accept_backoff_max = 1.0
    #: Seconds between two log lines about failing accept() calls.
    accept_error_log_interval = 5.0

    def __init__(self, config: Config | None = None, handler: Handler | None = None) -> None:
        self.config = (config or Config()).validate()
        self.mode = modes.get(self.config.mode)
        self.handler = handler or self.mode.make_handler()
        self.stats = ServerStats()
        self._sockets = Sockets()
        self._accepting: gevent.Greenlet[[socket.socket], None] | None = None
        #: The UDP echo service, when ``config.udp`` is set.
        self.udp: DatagramEcho | None = None
        self._datagrams: gevent.Greenlet[[], None] | None = None
        self._reaper: gevent.Greenlet[[], None] | None = None
        self._starter = GreenletStarter()
        self._fast_io = self.config.io == "fast"
        self._started = False
        self._slots = Semaphore(self.config.max_conns)
        self._connections: dict[gevent.Greenlet[[Connection], None], Connection] = {}
        self._stopping = False
        self._finished = False
        self._drained = Event()
        self._stopped = Event()
        self._accept_errors = AcceptErrors(
            self.accept_backoff_min,
            self.accept_backoff_max,
            RateLimitedLog(self.accept_error_log_interval),
        )

    # -- lifecycle -------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` actually bound; with port 0 the port the kernel chose."""
        if not self._started:
            raise RuntimeError("server not started")
        return self._sockets.address

    @property
    def connection_count(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    def status(self) -> dict[str, int]:
        """A snapshot for operators: connections, live greenlets, open descriptors, RSS.

        Counting greenlets walks every object the garbage collector tracks, so
        this is for occasional use (SIGUSR1 logs it), not for a hot path.
        """
        return procstats.snapshot(len(self._connections), self.stats.accepted)

    def log_status(self) -> None:
        """Log :meth:`status` as one line (``python -m geventsrv`` does this on SIGUSR1)."""
        log.info("%s", procstats.format_status(self.status()))

    def start(self) -> EchoServer:
        """Bind, listen and begin accepting in a background greenlet; returns at once.

        Raises :class:`~geventsrv.listen.ListenError` if the address cannot be
        used and :class:`NotPatchedError` if the process is not monkey-patched.
        """
        if self._started or self._stopping:
            return self
        require_monkey_patched()
        self._sockets = open_sockets(self.config)
        self._started = True
        transports = {(True, False): "", (False, True): ", udp", (True, True): ", tcp and udp"}
        log.info(
            "listening on %s (mode=%s%s)",
            format_address(*self.address),
            self.config.mode,
            transports[self.config.tcp, self.config.udp],
        )
        if self._sockets.tcp is not None:
            self._accepting = gevent.spawn(self._accept_loop, self._sockets.tcp)
            if self.config.idle_timeout is not None:
                reaper = IdleReaper(self.config.idle_timeout, self._connections)
                self._reaper = gevent.spawn(reaper.run)
        if self._sockets.udp is not None:
            self.udp = DatagramEcho(self._sockets.udp, self.mode.udp_transform)
            self._datagrams = gevent.spawn(self.udp.serve)
        return self

    def serve_forever(self) -> None:
        """Start if needed, then block until the server has stopped."""
        self.start()
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting now, let open connections finish, then close the rest.

        ``timeout`` (default ``config.drain_timeout``) is how long open
        connections may run before they are closed. Safe to call again, from
        another greenlet, with a shorter timeout: that cuts the drain short.
        """
        if timeout is None:
            timeout = self.config.drain_timeout
        self._stop_accepting()
        if self._connections:
            self._drained.wait(timeout)
        self._close_connections()
        self._finish()

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_accepting(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._accepting is not None:
            self._accepting.kill()
        if self._datagrams is not None:
            self._datagrams.kill()
        # Clients connecting from now on are refused by the kernel.
        self._sockets.close()
        if not self._connections:
            log.info("stopping: no longer accepting; no connection open")
            self._drained.set()
        else:
            log.info(
                "stopping: no longer accepting; %d connection(s) open, draining for up to %g s",
                len(self._connections),
                self.config.drain_timeout,
            )

    def _close_connections(self) -> None:
        if not self._connections:
            return
        greenlets = list(self._connections)
        self.stats.closed_at_stop += len(greenlets)
        log.info("closing %d connection(s) still open", len(greenlets))
        gevent.killall(greenlets, block=True)
        # A greenlet killed before it first ran never reached its cleanup.
        for greenlet in [g for g in greenlets if g in self._connections]:
            self._release(greenlet, self._connections[greenlet])

    def _finish(self) -> None:
        # A forced stop runs this while the first stop() still waits in it:
        # mark it done before anything below can yield.
        if self._finished:
            self._stopped.wait()
            return
        self._finished = True
        if self._reaper is not None:
            self._reaper.kill()
        self._starter.close()
        stats = self.stats
        if self.config.tcp:
            log.info(
                "stopped: %d connection(s) served, %d byte(s) echoed, %d closed at shutdown",
                stats.accepted,
                stats.bytes_echoed,
                stats.closed_at_stop,
            )
        if self.udp is not None:
            log.info(
                "%s: %d datagram(s) echoed, %d dropped by the loop guard, %d failed to send",
                "udp" if self.config.tcp else "stopped: udp",
                self.udp.echoed,
                self.udp.dropped,
                self.udp.errors,
            )
        self._stopped.set()

    # -- accepting -------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        acquire_slot = self._slots.acquire
        errors = self._accept_errors
        while True:
            # Taking the slot first keeps extra clients in the kernel backlog
            # instead of accepting them only to make them wait here.
            acquire_slot()
            try:
                sock, addr = listener.accept()
            except OSError as exc:
                self._slots.release()
                pause = errors.failed(exc, len(self._connections))
                self.stats.accept_errors = errors.count
                if pause is None:
                    gevent.spawn(self.stop)
                    return
                if pause:
                    gevent.sleep(pause)
                continue
            errors.succeeded()
            self._start_connection(sock, addr)

    def _start_connection(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        self.stats.accepted += 1
        try:
            # Echo replies are written as soon as they are read; Nagle's
            # algorithm would hold a small reply back for the previous one's ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # this connection's trouble must not end the accept loop
            log.debug("%s: dropped at once: %s", format_address(*addr[:2]), exc)
            sock.close()
            self._slots.release()
            return
        stream: StreamSocket = CooperativeSocket.adopt(sock) if self._fast_io else sock
        conn = Connection(stream, format_address(addr[0], addr[1]))
        greenlet = gevent.Greenlet(self._serve_connection, conn)
        self._connections[greenlet] = conn
        self._starter.start(greenlet)

    # -- serving ---------------------------------------------------------

    def _serve_connection(self, conn: Connection) -> None:
        try:
            self.handler(conn)
        except TimeoutError:
            self.stats.closed_idle += 1
            log.debug("%s: closed after %g s without progress", conn.peer, self.config.idle_timeout)
        except OSError as exc:
            self.stats.closed_by_error += 1
            log.debug("%s: connection lost: %s", conn.peer, exc.strerror or exc)
        except Exception as exc:  # a handler bug must cost only its own connection
            self.stats.closed_by_error += 1
            log.error("%s: handler failed: %r", conn.peer, exc)
            log.debug("handler failure", exc_info=True)
        finally:
            self._release(gevent.getcurrent(), conn)

    def _release(self, greenlet: object, conn: Connection) -> None:
        conn.sock.close()
        self.stats.bytes_echoed += conn.bytes_echoed
        del self._connections[greenlet]  # type: ignore[arg-type]
        self._slots.release()
        if self._stopping and not self._connections:
            self._drained.set()
        log.debug("%s: closed after %d byte(s)", conn.peer, conn.bytes_echoed)
