"""The server: one greenlet per connection, limits, back-off, idle reaping and drain.

Per connection a handler calls ``recv()`` and ``sendall()``, ordinary
blocking-socket code. The calls park only their own greenlet because of what
sits under them: by default geventsrv's own cooperative socket
(:mod:`geventsrv.cooperative`, on gevent's hub), with ``--io patched`` the
socket ``gevent.monkey.patch_all()`` put in the standard library's place.
New connections are accepted and started from the hub
(:mod:`geventsrv.newcomers`); the accept loop is the greenlet that waits when
that needs a wait (a free slot, a back-off). The rest (the prologue, the
reaper, the drain) waits through the patched library, so
:meth:`EchoServer.start` refuses to run in an unpatched process, where it
would serve one client at a time. Binding lives in :mod:`geventsrv.listen`,
the process around a server (signals, limits) in :mod:`geventsrv.service`.

Error handling
    A connection's failure (reset, broken pipe, idle timeout) ends that
    connection only, with one debug line in the log; a bug in a handler ends
    its connection too, with one error line (the traceback at debug level).
    ``accept()`` failures are sorted by errno (:mod:`geventsrv.accepting`): ones
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
    At most ``max_conns`` connections are served at once: a slot is taken
    before each ``accept()``, so further clients wait in the
    kernel's listen backlog and are served, oldest first, as slots free.
    Every accepted socket is closed exactly once: by :meth:`EchoServer._release`,
    run by the greenlet that serves it or, for a greenlet killed before it
    first ran, by :meth:`EchoServer.stop`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from geventsrv import modes, procstats
from geventsrv.accepting import AcceptErrors, RateLimitedLog
from geventsrv.addresses import format_address
from geventsrv.cmdline import quiet_ctrl_c_in_greenlets
from geventsrv.config import Config
from geventsrv.connection import Connection, Drained, Handler, IdleTimeout
from geventsrv.limits import AccessList, Gate, TokenBuckets, parse_rate
from geventsrv.listen import ListenError, Sockets, open_sockets
from geventsrv.newcomers import Newcomers
from geventsrv.prologue import OpeningFailed, Prologue
from geventsrv.stats import CloseReason, Refusal, ServerStats
from geventsrv.udp import DatagramEcho, reflector_warning

log = logging.getLogger(__name__)
#: One line per closed connection, with ``--access-log``.
access_log = logging.getLogger("geventsrv.access")

#: Why the gate turned a client away, as logged (rate-limited).
REFUSALS: dict[Refusal, str] = {
    "denied": "not allowed by --allow/--deny",
    "limit": "it holds --max-conns-per-client connections already",
    "rate": "it opens connections faster than --accept-rate-per-client",
}

__all__ = ["EchoServer", "IdleTimeout", "ListenError", "NotPatchedError"]

if TYPE_CHECKING:
    #: A connection's greenlet: the prologue on the accepted socket, then the handler.
    ConnectionGreenlet = gevent.Greenlet[[Connection, socket.socket], None]


class NotPatchedError(RuntimeError):
    """The process was not monkey-patched, so blocking calls would block every client."""


def require_monkey_patched() -> None:
    """Raise :class:`NotPatchedError` unless gevent has patched ``socket``."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        raise NotPatchedError(
            "geventsrv serves clients with blocking socket calls and needs "
            "gevent.monkey.patch_all() to run first, before other imports "
            "(python -m geventsrv does this)"
        )


class IdleReaper:
    """Closes connections whose progress counters stood still for ``timeout`` seconds.

    Keeps its own record of what it saw of each connection (the handlers'
    :class:`~geventsrv.connection.Connection` carries only the counters);
    :meth:`sweep` is one look at all of them, :meth:`run` sweeps every quarter
    of the timeout.
    """

    def __init__(self, timeout: float, connections: Mapping[Any, Connection]) -> None:
        self.timeout = timeout
        self.connections = connections
        #: greenlet -> (the last bytes received + sent seen, when first seen).
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
            mark = conn.bytes_received + conn.bytes_sent
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

    def __init__(
        self,
        config: Config | None = None,
        handler: Handler | None = None,
        sockets: Sockets | None = None,
        shares: EchoServer | None = None,
    ) -> None:
        """Raises :class:`~geventsrv.config.ConfigError` for a bad value or TLS file.

        ``sockets``, if given, are served instead of binding ``config.host``
        and ``config.port`` (systemd's socket activation hands them over).
        ``shares``, another server of the same process, lends its connection
        slots (``max_conns`` counts both), its per-client gate and its totals:
        what :class:`~geventsrv.servergroup.ServerGroup` does for ``--listen``.
        The lender logs the totals when it stops; a borrower does not.
        """
        self.config = (config or Config()).validate()
        self.mode = modes.get(self.config.mode)
        self.handler = handler or self.mode.make_handler(self.config)
        watch_readiness = getattr(self.handler, "watch_readiness", None)
        if watch_readiness is not None:  # a handler that reports readiness itself (gRPC health)
            watch_readiness(lambda: self.ready)
        config = self.config
        self._lender = shares
        #: Who may connect and how much each client may take.
        self.gate: Gate = shares.gate if shares is not None else Gate(
            AccessList(config.allow, config.deny),
            config.per_client_limit,
            parse_rate(config.accept_rate_per_client) if config.accept_rate_per_client else None,
            config.ipv6_client_prefix,
            spare_loopback=config.per_client_limit_spares_loopback,
        )  # fmt: skip
        # Behind a PROXY header the socket's peer is the proxy: the client is
        # judged once its header says who it is (in the prologue), not here.
        self._gate_at_accept = self.gate.active and config.proxy_protocol is None
        #: What runs before the handler (PROXY header, TLS) and makes its stream.
        #: Built here so that a bad TLS file fails before anything is bound.
        self._prologue = Prologue(config, self.gate if self.gate.active else None)
        self._refusals = RateLimitedLog(self.accept_error_log_interval)
        self._openings = RateLimitedLog(self.accept_error_log_interval)
        self.stats: ServerStats = shares.stats if shares is not None else ServerStats()
        self._sockets = Sockets()
        self._given_sockets = sockets
        self._accepting: gevent.Greenlet[[socket.socket], None] | None = None
        self._newcomers: Newcomers | None = None
        #: The UDP echo service, when ``config.udp`` is set.
        self.udp: DatagramEcho | None = None
        #: HTTP/3's QUIC endpoint (:class:`geventsrv.quic.QuicEndpoint`), with ``--http3``.
        self.quic: Any = None
        self._datagrams: gevent.Greenlet[[], None] | None = None
        self._reaper: gevent.Greenlet[[], None] | None = None
        self._started = False
        self._slots: Semaphore = (
            shares._slots if shares is not None else Semaphore(self.config.max_conns)
        )
        self._connections: dict[ConnectionGreenlet, Connection] = {}
        self._stopping = False
        self._leaving = False
        self._closed_at_stop = 0
        self._finished = False
        self._drained = Event()
        self._stopped = Event()
        self._accept_errors = AcceptErrors(
            self.accept_backoff_min,
            self.accept_backoff_max,
            RateLimitedLog(self.accept_error_log_interval),
            self.stats.accept_errors_by_errno,
        )
        self._access_log = self.config.access_log
        #: Said after "stopping" in the log: which listener, when a process has several.
        self.log_label = ""

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

    @property
    def ready(self) -> bool:
        """Whether new clients should be sent here: started, and no stop begun or announced."""
        return self._started and not self._stopping and not self._leaving

    def announce_stop(self) -> None:
        """Say the server is going (``ready`` turns false) while it keeps accepting.

        The first step of a stop with a shutdown delay: a balancer polling
        readiness stops sending clients before the listener closes.
        """
        self._leaving = True

    def open_bytes(self) -> tuple[int, int]:
        """Bytes received and sent so far by the connections open right now."""
        connections = list(self._connections.values())
        return (
            sum(conn.bytes_received for conn in connections),
            sum(conn.bytes_sent for conn in connections),
        )

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
        # A program embedding the server may be stopped with Ctrl-C: if the interrupt
        # lands in a connection's greenlet, the program's main greenlet gets it, quietly.
        quiet_ctrl_c_in_greenlets()
        self.bind()
        self._started = True
        transports = {(True, False): "", (False, True): ", udp", (True, True): ", tcp and udp"}
        serving = (self._sockets.tcp is not None, self._sockets.udp is not None)
        if self.config.http3 and self.config.tls_cert is not None:
            transports[True, True] = ", http/3 on udp"
        front = ""
        if self.config.tls_cert is not None:
            front += ", tls" + (" with client certificates" if self.config.tls_ca else "")
        if self.config.proxy_protocol is not None:
            front += f", proxy protocol {self.config.proxy_protocol}"
        log.info(
            "listening on %s (mode=%s%s%s)",
            format_address(*self.address),
            self.config.mode,
            transports[serving],
            front,
        )
        if self._sockets.tcp is not None:
            self._accepting = gevent.spawn(self._accept_loop, self._sockets.tcp)
            if self.config.idle_timeout is not None:
                reaper = IdleReaper(self.config.idle_timeout, self._connections)
                self._reaper = gevent.spawn(reaper.run)
        open_quic = getattr(self.handler, "open_quic", None)
        if self._sockets.udp is not None and open_quic is not None and self.config.http3:
            access = self.gate.access if self.gate.access.active else None
            self.quic = open_quic(self._sockets.udp, self._slots, access, self.config)
            self._datagrams = gevent.spawn(self.quic.serve)
        elif self._sockets.udp is not None:
            udp_rate = self.config.udp_rate_per_client
            self.udp = DatagramEcho(
                self._sockets.udp,
                self.mode.udp_transform,
                self.gate.access,
                TokenBuckets(*parse_rate(udp_rate)) if udp_rate else None,
                self.config.ipv6_client_prefix,
            )
            self._warn_if_reflector()
            self._datagrams = gevent.spawn(self.udp.serve)
        return self

    def bind(self) -> None:
        """Open the listening sockets (:meth:`start` does it if not done yet); raises
        :class:`~geventsrv.listen.ListenError`. Nothing is accepted before :meth:`start`."""
        if self._sockets.tcp is None and self._sockets.udp is None:
            self._sockets = self._given_sockets or open_sockets(self.config)

    def close_sockets(self) -> None:
        """Close what :meth:`bind` opened, for a server that will not start after all."""
        if not self._started:
            self._sockets.close()

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
        deadline = time.monotonic() + timeout
        self.stop_accepting()
        if self._connections:
            self._drained.wait(timeout)
        if self.quic is not None:
            self._drain_quic(deadline)
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

    def _warn_if_reflector(self) -> None:
        warning = reflector_warning(
            self.address[0], bool(self.gate.access.allow), self.config.udp_rate_per_client
        )
        if warning is not None:
            log.warning("%s", warning)

    def stop_accepting(self) -> None:
        """The first step of :meth:`stop`: close the listener and let open connections
        drain (those between requests close now); returns at once."""
        if self._stopping:
            return
        self._stopping = True
        if self._accepting is not None:
            self._accepting.kill()
        if self.quic is not None:
            # QUIC's connections drain on the UDP socket: it stays open until they are done.
            self.quic.go_away()
            if self._sockets.tcp is not None:
                self._sockets.tcp.close()
        else:
            if self._datagrams is not None:
                self._datagrams.kill()
            # Clients connecting from now on are refused by the kernel.
            self._sockets.close()
        # Request/response connections: finish the request at hand, then close;
        # those waiting between requests are closed now (RFC 9112 9.6).
        for greenlet, conn in list(self._connections.items()):
            conn.draining = True
            if conn.between_requests:
                greenlet.kill(Drained, block=False)
        if not self._connections:
            log.info("stopping%s: no longer accepting; no connection open", self.log_label)
            self._drained.set()
        else:
            log.info(
                "stopping%s: no longer accepting; %d connection(s) open, draining for up to %g s",
                self.log_label,
                len(self._connections),
                self.config.drain_timeout,
            )

    def _drain_quic(self, deadline: float) -> None:
        """Let HTTP/3's requests under way finish until ``deadline``, then close every QUIC
        connection (CONNECTION_CLOSE) and the UDP socket."""
        quic = self.quic
        if quic.busy:
            log.info("stopping: %d QUIC connection(s) finishing their requests", len(quic.open))
        while quic.busy and time.monotonic() < deadline:
            gevent.sleep(0.05)
        quic.close_all()
        if self._datagrams is not None:
            self._datagrams.kill()
        self._sockets.close()

    def _close_connections(self) -> None:
        if not self._connections:
            return
        greenlets = list(self._connections)
        self._closed_at_stop = len(greenlets)
        log.info("closing %d connection(s) still open", len(greenlets))
        gevent.killall(greenlets, block=True)
        # A greenlet killed before it first ran never reached its cleanup.
        for greenlet in [g for g in greenlets if g in self._connections]:
            self._release(greenlet, self._connections[greenlet], "shutdown")

    def _finish(self) -> None:
        # A forced stop runs this while the first stop() still waits in it:
        # mark it done before anything below can yield.
        if self._finished:
            self._stopped.wait()
            return
        self._finished = True
        if self._reaper is not None:
            self._reaper.kill()
        if self._newcomers is not None:
            self._newcomers.close()
        stats = self.stats
        if self._lender is None and (self._sockets.tcp is not None or self.config.tcp):
            log.info(
                "stopped: %d connection(s) served, %d byte(s) received, %d sent, "
                "%d closed at shutdown",
                stats.accepted,
                stats.bytes_received,
                stats.bytes_sent,
                self._closed_at_stop,
            )
        if self.quic is not None:
            quic = self.quic
            log.info(
                "http/3: %d QUIC connection(s), %d Retry packet(s) sent, %d refused",
                quic.connections, quic.retries, quic.refused,
            )  # fmt: skip
        if self.udp is not None:
            log.info(
                "%s: %d datagram(s) echoed, %d dropped by the loop guard, %d over a source's "
                "rate, %d denied, %d failed to send",
                "udp" if self.config.tcp else "stopped: udp",
                self.udp.echoed,
                self.udp.dropped,
                self.udp.limited,
                self.udp.denied,
                self.udp.errors,
            )
        self._stopped.set()

    # -- accepting -------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        # The hub accepts and starts connections (Newcomers); this greenlet
        # waits for what needs waiting: a free slot, an accept() back-off.
        errors = self._accept_errors
        newcomers = self._newcomers = Newcomers(
            listener, self._slots, self._start_connection, self._prologue.socket_class
        )
        try:
            while True:
                trouble = newcomers.run()
                if trouble is None:  # every slot taken: extra clients wait in the backlog
                    self._slots.wait()
                    continue
                pause = errors.failed(trouble, len(self._connections))
                self.stats.accept_errors = errors.count
                if pause is None:
                    gevent.spawn(self.stop)
                    return
                if pause:
                    gevent.sleep(pause)
        finally:
            # Those accepted already still start (and drain) until _finish().
            newcomers.stop_accepting()

    def _start_connection(
        self, sock: socket.socket, addr: tuple[str, int]
    ) -> ConnectionGreenlet | None:
        """The greenlet to serve an accepted socket (its slot taken), or None if refused.

        Runs in the hub, from :class:`~geventsrv.newcomers.Newcomers`: nothing here waits.
        """
        self._accept_errors.succeeded()
        self.stats.accepted += 1
        limit_key = None
        if self._gate_at_accept:
            refusal, limit_key = self.gate.admit(addr[0])
            if refusal is not None:
                self._refuse(sock, addr, refusal)
                return None
        try:
            # Echo replies are written as soon as they are read; Nagle's
            # algorithm would hold a small reply back for the previous one's ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # this connection's trouble must not end the accept loop
            log.debug("%s: dropped at once: %s", format_address(*addr[:2]), exc)
            sock.close()
            if limit_key is not None:
                self.gate.release(limit_key)
            self._slots.release()
            return None
        # Until the prologue hands over its stream, conn.sock is the accepted
        # socket: what _release() closes if the greenlet never runs.
        conn = Connection(sock, format_address(addr[0], addr[1]), self.stats.accepted)
        conn.limit_key = limit_key
        greenlet = gevent.Greenlet(self._serve_connection, conn, sock)
        self._connections[greenlet] = conn
        return greenlet

    def _refuse(self, sock: socket.socket, addr: tuple[str, int], reason: Refusal) -> None:
        """Close a connection the gate turned away, before any greenlet work is spent on it."""
        sock.close()
        self._slots.release()
        self.stats.closed[reason] += 1
        self._log_refusal(format_address(addr[0], addr[1]), reason)

    def _log_refusal(self, client: str, reason: Refusal) -> None:
        """One rate-limited line per refusal, at accept() or after a PROXY header alike."""
        self._refusals(logging.INFO, "%s: refused (%s)", client, REFUSALS[reason])

    # -- serving ---------------------------------------------------------

    def _serve_connection(self, conn: Connection, accepted: socket.socket) -> None:
        reason: CloseReason = "eof"
        try:
            conn.sock = self._prologue.open(conn, accepted)
            self.handler(conn)
        except OpeningFailed as exc:
            reason = exc.reason
            if exc.reason in REFUSALS:  # the gate, judging the client its PROXY header named
                self._log_refusal(conn.client, exc.reason)
            elif exc.level > logging.DEBUG:  # something to fix in front: said, sparingly
                self._openings(exc.level, "%s: closed before serving: %s", conn.client, exc)
            else:
                log.debug("%s: closed before serving: %s", conn.client, exc)
        except Drained:  # closed between requests at shutdown: a clean end
            log.debug("%s: closed between requests at shutdown", conn.client)
        except IdleTimeout:
            reason = "idle"
            log.debug(
                "%s: closed after %g s without progress", conn.client, self.config.idle_timeout
            )
        except OSError as exc:
            reason = "reset"
            log.debug("%s: connection lost: %s", conn.client, exc.strerror or exc)
        except Exception as exc:  # a handler bug must cost only its own connection
            reason = "error"
            log.error("%s: handler failed: %r", conn.client, exc)
            log.debug("handler failure", exc_info=True)
        except gevent.GreenletExit:  # killed at the drain deadline
            reason = "shutdown"
            raise
        finally:
            self._release(gevent.getcurrent(), conn, reason)

    def _release(self, greenlet: object, conn: Connection, reason: CloseReason) -> None:
        conn.sock.close()
        if conn.limit_key is not None:
            self.gate.release(conn.limit_key)
        stats = self.stats
        stats.bytes_received += conn.bytes_received
        stats.bytes_sent += conn.bytes_sent
        stats.closed[reason] += 1
        duration = time.monotonic() - conn.started
        stats.durations.observe(duration)
        del self._connections[greenlet]  # type: ignore[arg-type]
        self._slots.release()
        if self._stopping and not self._connections:
            self._drained.set()
        if reason not in REFUSALS and reason != "refused":  # refused ones had their line
            log.debug(
                "%s: closed after %d byte(s) in, %d out",
                conn.client, conn.bytes_received, conn.bytes_sent,
            )  # fmt: skip
        if self._access_log and not self.mode.logs_requests:
            access_log.info(
                "%s: %s after %.3f s, %d byte(s) in, %d out",
                conn.client,
                reason,
                duration,
                conn.bytes_received,
                conn.bytes_sent,
                extra={
                    "client": conn.client,
                    "reason": reason,
                    "duration": round(duration, 6),
                    "received": conn.bytes_received,
                    "sent": conn.bytes_sent,
                },
            )
