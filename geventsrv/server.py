"""The accept loop: one greenlet per connection, limits, back-off and graceful stop.

Everything here is ordinary blocking-socket code. It becomes concurrent only
because ``gevent.monkey.patch_all()`` has replaced the ``socket`` module's
blocking calls with ones that park the calling greenlet; :meth:`EchoServer.start`
refuses to run without that, since unpatched it would serve one client at a time.

Error handling
    A connection's failure (reset, broken pipe, idle timeout, even a bug in a
    handler) ends that connection only, with one debug line in the log.
    ``accept()`` failures are sorted by errno: ones that concern the single
    connection being accepted are retried at once; running out of descriptors
    or memory backs off (doubling from :attr:`EchoServer.accept_backoff_min` to
    :attr:`EchoServer.accept_backoff_max`) with rate-limited log lines, and
    recovers by itself when resources free; a broken listening socket stops
    the server.

Idle connections
    A connection that moves no data in either direction for ``idle_timeout``
    seconds is closed by one reaper greenlet that looks at every connection's
    progress counters each quarter of the timeout (so it closes within 1.25x
    the timeout). The sockets themselves have no timeout: a per-socket timeout
    makes gevent arm and cancel a timer around every call that waits: in the
    lab that cost 5-15% more server CPU per 1 KiB request, and 0.8 KiB more
    memory per idle connection (the parked timer).

Resource handling
    At most ``max_conns`` connections are served at once: the accept loop
    takes a slot before it calls ``accept()``, so further clients wait in the
    kernel's listen backlog and are served, oldest first, as slots free.
    Every accepted socket is closed exactly once, by the greenlet that serves
    it or, for a greenlet killed before it ran, by :meth:`EchoServer.stop`.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass
from types import TracebackType

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from geventsrv.config import Config, format_address
from geventsrv.handlers import Connection, Handler, make_handler
from geventsrv.udp import DatagramEcho, open_datagram_socket

log = logging.getLogger(__name__)

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


class ListenError(OSError):
    """The server could not bind or listen; ``str()`` names the address and the cause."""


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


def open_listener(config: Config, listen: bool = True) -> socket.socket:
    """Bind and listen as ``config`` says; :class:`ListenError` names the address on failure.

    With ``listen=False`` the socket is only bound: it holds the address (and,
    with ``config.reuse_port``, lets other processes share it) without
    taking connections.
    """
    where = format_address(config.host, config.port)
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            config.host, config.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server bind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        if listen:
            sock.listen(config.backlog)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise ListenError(exc.errno, f"cannot listen on {where}: {reason}") from None
    return sock


class _RateLimitedLog:
    """Logs the first of a run of similar events at once, then one summary per interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar suppressed)"
            args += (self._suppressed,)
        log.log(level, message, *args)
        self._next = now + self.interval
        self._suppressed = 0


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
        self.handler = handler or make_handler(self.config.mode)
        self.stats = ServerStats()
        self._listener: socket.socket | None = None
        self._accepting: gevent.Greenlet[[], None] | None = None
        #: The UDP echo service, when ``config.udp`` is set.
        self.udp: DatagramEcho | None = None
        self._datagrams: gevent.Greenlet[[], None] | None = None
        self._reaper: gevent.Greenlet[[float], None] | None = None
        self._started = False
        self._slots = Semaphore(self.config.max_conns)
        self._connections: dict[gevent.Greenlet[[Connection], None], Connection] = {}
        self._stopping = False
        self._drained = Event()
        self._stopped = Event()
        self._accept_log = _RateLimitedLog(self.accept_error_log_interval)

    # -- lifecycle -------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` actually bound; with port 0 the port the kernel chose."""
        sock = self._listener or (self.udp.sock if self.udp else None)
        if sock is None:
            raise RuntimeError("server not started")
        host, port = sock.getsockname()[:2]
        return host, port

    @property
    def connection_count(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    def status(self) -> dict[str, int]:
        """A snapshot for operators: connections, live greenlets, open descriptors, RSS.

        Counting greenlets walks every object the garbage collector tracks, so
        this is for occasional use (SIGUSR1 logs it), not for a hot path.
        """
        from greenlet import greenlet

        greenlets = sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)
        try:
            descriptors = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
        except OSError:
            descriptors = -1
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            with open("/proc/self/statm") as statm:
                rss_kib = int(statm.read().split()[1]) * resource.getpagesize() // 1024
        except OSError:
            pass
        return {
            "connections": len(self._connections),
            "greenlets": greenlets,
            "descriptors": descriptors,
            "rss_kib": rss_kib,
            "accepted": self.stats.accepted,
        }

    def log_status(self) -> None:
        """Log :meth:`status` as one line (``python -m geventsrv`` does this on SIGUSR1)."""
        log.info(
            "status: %(connections)d connection(s) open, %(greenlets)d greenlet(s), "
            "%(descriptors)d descriptor(s), RSS %(rss_kib)d KiB, %(accepted)d accepted",
            self.status(),
        )

    def start(self) -> EchoServer:
        """Bind, listen and begin accepting in a background greenlet; returns at once.

        Raises :class:`ListenError` if the address cannot be used and
        :class:`NotPatchedError` if the process is not monkey-patched.
        """
        if self._started or self._stopping:
            return self
        require_monkey_patched()
        self._bind()
        self._started = True
        host, port = self.address
        transports = {(True, False): "", (False, True): ", udp", (True, True): ", tcp and udp"}
        log.info(
            "listening on %s (mode=%s%s)",
            format_address(host, port),
            self.config.mode,
            transports[self.config.tcp, self.config.udp],
        )
        if self._listener is not None:
            self._accepting = gevent.spawn(self._accept_loop)
            if self.config.idle_timeout is not None:
                self._reaper = gevent.spawn(self._reap_idle, self.config.idle_timeout)
        if self.udp is not None:
            self._datagrams = gevent.spawn(self.udp.serve)
        return self

    def _bind(self) -> None:
        """Open the TCP listener and/or the UDP socket, on one port number."""
        config = self.config
        # With port 0 and both transports, the port the kernel picks for TCP
        # may be taken for UDP: try a few times before giving up.
        attempts = 5 if config.tcp and config.udp and config.port == 0 else 1
        for attempt in range(attempts):
            if config.tcp:
                self._listener = open_listener(config)
            if not config.udp:
                return
            port = self._listener.getsockname()[1] if self._listener else config.port
            try:
                sock = open_datagram_socket(config.host, port)
            except OSError as exc:
                if self._listener is not None:
                    self._listener.close()
                    self._listener = None
                if attempt + 1 < attempts:
                    continue
                where = format_address(config.host, port)
                reason = (exc.strerror or str(exc)).lower()
                raise ListenError(exc.errno, f"cannot listen on {where} (udp): {reason}") from None
            transform = bytes.upper if config.mode == "upper" else None
            self.udp = DatagramEcho(sock, transform)
            return

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
        if self._listener is not None:
            # Clients connecting from now on are refused by the kernel.
            self._listener.close()
        if self._datagrams is not None:
            self._datagrams.kill()
        if self.udp is not None:
            self.udp.sock.close()
        log.info(
            "stopping: no longer accepting; %d connection(s) open, draining for up to %g s",
            len(self._connections),
            self.config.drain_timeout,
        )
        if not self._connections:
            self._drained.set()

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
        if self._stopped.is_set():
            return
        if self._reaper is not None:
            self._reaper.kill()
        stats = self.stats
        log.info(
            "stopped: %d connection(s) served, %d byte(s) echoed, %d closed at shutdown",
            stats.accepted,
            stats.bytes_echoed,
            stats.closed_at_stop,
        )
        if self.udp is not None:
            log.info(
                "udp: %d datagram(s) echoed, %d dropped by the loop guard, %d failed to send",
                self.udp.echoed,
                self.udp.dropped,
                self.udp.errors,
            )
        self._stopped.set()

    # -- accepting -------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        acquire_slot = self._slots.acquire
        backoff = 0.0
        while True:
            # Taking the slot first keeps extra clients in the kernel backlog
            # instead of accepting them only to make them wait here.
            acquire_slot()
            try:
                sock, addr = listener.accept()
            except OSError as exc:
                self._slots.release()
                backoff = self._accept_failed(exc, backoff)
                if backoff < 0:
                    return
                continue
            if backoff:
                log.info("accepting again")
                backoff = 0.0
            self._start_connection(sock, addr)

    def _accept_failed(self, exc: OSError, backoff: float) -> float:
        """Sort an accept() error; pause if needed. Returns the new back-off, < 0 to give up."""
        code = exc.errno
        if code in ACCEPT_TRANSIENT_ERRNOS:
            log.debug("accept() of one connection failed: %s", exc)
            return backoff
        self.stats.accept_errors += 1
        if code in ACCEPT_FATAL_ERRNOS:
            log.error("listening socket failed: %s; stopping", exc)
            gevent.spawn(self.stop)
            return -1.0
        backoff = min(max(backoff * 2, self.accept_backoff_min), self.accept_backoff_max)
        self._accept_log(
            logging.WARNING,
            "accept() failed: %s (%d connection(s) open); retrying in %g s",
            exc.strerror or exc,
            len(self._connections),
            backoff,
        )
        gevent.sleep(backoff)
        return backoff

    def _start_connection(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        self.stats.accepted += 1
        # Echo replies are written as soon as they are read; Nagle's
        # algorithm would hold a small reply back for the previous one's ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock, format_address(addr[0], addr[1]))
        greenlet = gevent.spawn(self._serve_connection, conn)
        self._connections[greenlet] = conn

    def _reap_idle(self, timeout: float) -> None:
        """Close connections whose progress counters stood still for ``timeout`` seconds."""
        interval = timeout / 4
        while True:
            gevent.sleep(interval)
            now = time.monotonic()
            for greenlet, conn in list(self._connections.items()):
                mark = conn.bytes_echoed + conn.progress
                if mark != conn.idle_mark:
                    conn.idle_mark, conn.idle_since = mark, now
                elif now - conn.idle_since >= timeout and greenlet:  # started, not dead
                    conn.idle_since = float("inf")  # killed once is enough
                    greenlet.kill(IdleTimeout, block=False)

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


class _ShutdownSignals:
    """SIGINT/SIGTERM handling for :func:`serve`: first signal drains, second forces.

    SIGUSR1 logs the server's status line.

    Uses gevent's signal watchers, so the handler runs in a greenlet and can
    wait; the previous Python-level handlers are put back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, server: EchoServer) -> None:
        self.server = server
        self.received = 0
        self.forced = False
        self._saved: dict[int, object] = {}
        self._watchers: list[object] = []

    def __enter__(self) -> _ShutdownSignals:
        for signum in self.SIGNALS:
            self._saved[signum] = signal.getsignal(signum)
            self._watchers.append(gevent.signal_handler(signum, self._on_signal, signum))
        # SIGUSR1 logs a status line; it belongs to no shutdown, but this is
        # where the process's signal handling lives.
        self._saved[signal.SIGUSR1] = signal.getsignal(signal.SIGUSR1)
        self._watchers.append(gevent.signal_handler(signal.SIGUSR1, self.server.log_status))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for watcher in self._watchers:
            watcher.cancel()  # type: ignore[attr-defined]
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        self.received += 1
        if self.received == 1:
            log.info("%s received: shutting down (send again to force)", name)
            self.server.stop()
        else:
            self.forced = True
            log.warning("%s received again: closing every connection now", name)
            self.server.stop(0)


def serve(config: Config | None = None) -> bool:
    """Run a server until SIGINT or SIGTERM, as ``python -m geventsrv`` does.

    The first signal stops accepting and drains open connections for up to
    ``config.drain_timeout`` seconds; a second one closes them at once.
    Returns ``True`` if the shutdown was clean, ``False`` if a second signal
    forced it. Raises :class:`ListenError` or :class:`NotPatchedError` if the
    server cannot start.
    """
    config = (config or Config()).validate()
    # Each connection holds a descriptor; leave room for the process's own.
    limit = raise_open_file_limit(config.max_conns + 64)
    if limit < config.max_conns + 16:
        log.warning(
            "open-file limit is %d, below max-conns %d: past about %d connections "
            "accept() will fail and back off until descriptors free",
            limit,
            config.max_conns,
            max(limit - 16, 0),
        )
    server = EchoServer(config)
    # Handlers go in before the socket is bound: a caller that sees the
    # "listening" line may signal at once, and must get a graceful stop.
    with _ShutdownSignals(server) as signals:
        server.start()
        server.serve_forever()
    return not signals.forced
