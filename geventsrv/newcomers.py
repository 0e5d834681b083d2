"""Taking new connections: accepted and started from the hub, with a share of each loop turn.

Under load, one turn of gevent's hub serves every ready connection once: a
tenth of a second or more when thousands are busy. New connections must not
wait behind that turn after turn, nor may a storm of them starve the busy ones.
:class:`Newcomers` runs in the hub, from the listener's readiness: it accepts
what the kernel has queued, then starts each new connection's greenlet (which
runs until it first waits, usually after its first echo), back to the queue
every few milliseconds, until both are done or the newcomers' share of the
turn is spent. That share grows with the rest of the turn:
:attr:`Newcomers.ratio` times what everything else took since the last batch,
between :attr:`Newcomers.floor` and :attr:`Newcomers.ceiling`. Against a few
busy connections a storm gets milliseconds per turn, so those connections
keep being served every few milliseconds; against ten thousand it gets up to
the ceiling, which is what newcomers then need, and the busy ones still get a
turn at least that often.

Why accept and start in one place, in the hub: started from a greenlet of its
own, an accept loop can only hand new greenlets to the hub to start later, and
each of them then waits for a turn of every busy connection. Measured with
``python -m geventsrv.bench storm`` (10,000 connections opened back to back,
each echoing 64 bytes in a closed loop from the moment it connects, for 2 s,
from one address): the accept loop that took 64 connections per turn and
started them 20 ms per turn left 5,848 of them never echoed, the longest wait
1.78 s; this, none, 0.24 s. Within a batch the kernel's queue is accepted
first and looked at again every :attr:`Newcomers.accept_every` seconds of
starts: accepting costs a few microseconds, a start (the first echo included)
many times that, and a queue left alone overflows, whose clients retry their
handshake a second later.

Whatever needs a wait goes back to the greenlet that called :meth:`Newcomers.run`:
no free connection slot, or an ``accept()`` failure (its back-off sleeps).
"""

from __future__ import annotations

import collections
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.hub import Waiter
from gevent.lock import Semaphore

# Lines about accepting belong with the server's own.
log = logging.getLogger("geventsrv.server")

_READ = 1  # libev's and libuv's EV_READ
#: Every connection slot is taken.
_FULL = object()

#: Makes the greenlet that serves an accepted connection, or None if it was turned away.
Admit = Callable[[socket.socket, Any], "gevent.Greenlet[..., None] | None"]


class Newcomers:
    """Accepts from ``listener`` and starts each connection's greenlet, from the hub.

    Accepted sockets are made ``socket_class`` objects (gevent's socket, or the
    standard library's where geventsrv's own cooperative socket takes over).
    ``admit(sock, address)`` is called in the hub for every accepted socket,
    with a slot of ``slots`` already taken for it; it returns the greenlet to
    start (created, not started) or None if it turned the connection away (and
    gave the slot back). It must not wait. Should it raise, that connection is
    closed, its slot given back, the error logged, and accepting goes on.
    """

    #: Newcomers' share of a loop turn: this many times what the rest of the turn took ...
    ratio = 32.0
    #: ... but at least this many seconds (a storm against few busy connections) ...
    floor = 0.005
    #: ... and at most this many (how long busy connections may wait, each turn, during a storm).
    ceiling = 0.25
    #: Seconds of starts between two looks at the kernel's queue within a batch.
    accept_every = 0.01

    def __init__(
        self,
        listener: socket.socket,
        slots: Semaphore,
        admit: Admit,
        socket_class: type[socket.socket] = socket.socket,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.listener = listener
        self.slots = slots
        self.admit = admit
        self.socket_class = socket_class
        self.clock = clock
        self._hub = gevent.get_hub()
        self._watcher: Any = self._hub.loop.io(listener.fileno(), _READ)
        self._timer: Any = self._hub.loop.timer(0.0)
        self._pending: collections.deque[gevent.Greenlet[..., None]] = collections.deque()
        self._waiter: Waiter[OSError | None] | None = None
        self._last_batch_end = clock()

    def run(self) -> OSError | None:
        """Take connections as they come, until one needs a wait; park the caller meanwhile.

        Returns None when every connection slot is taken (the caller waits for
        one to free), or the ``OSError`` that ``accept()`` raised (the caller
        decides whether to retry, pause or stop). Connections accepted by then
        are still started. Killing the caller stops accepting.
        """
        if self._watcher is None:
            raise RuntimeError("no longer accepting")
        waiter: Waiter[OSError | None] = Waiter()
        self._waiter = waiter
        self._watcher.start(self._batch)
        try:
            return waiter.get()
        finally:
            self._waiter = None
            if self._watcher is not None:
                self._watcher.stop()

    def share(self, now: float) -> float:
        """Seconds the batch starting at ``now`` may take."""
        rest = now - self._last_batch_end
        return min(self.ceiling, max(self.floor, self.ratio * rest))

    def _batch(self) -> None:
        # Runs in the hub: from the listener's readiness (level-triggered: a
        # queue left non-empty brings it back next turn, after the rest), or
        # from the timer that starts what a spent share left pending.
        start = self.clock()
        deadline = start + self.share(start)
        trouble: object = None
        try:
            while True:
                accepting = self._watcher is not None and self._watcher.active
                if accepting and trouble is None:
                    trouble = self._accept_queued(deadline)
                # Back to the kernel's queue every few milliseconds of starts:
                # clients keep connecting meanwhile, and a queue left alone
                # for a whole long share would overflow.
                self._start_pending(min(deadline, self.clock() + self.accept_every))
                if not self._pending or self.clock() >= deadline:
                    break
        finally:
            self._last_batch_end = self.clock()
        if self._pending and not self._timer.active:
            self._timer.start(self._batch)
        if trouble is not None and self._watcher is not None:
            self._watcher.stop()  # a wait is needed: the caller of run() takes over
            if self._waiter is not None:
                self._waiter.switch(trouble if isinstance(trouble, OSError) else None)

    def _accept_queued(self, deadline: float) -> object:
        """Accept what the kernel has queued, up to ``deadline``, for starting after.

        Returns None once the queue is empty or the share spent, _FULL without
        a free slot, or the OSError of ``accept()``.
        """
        listener, slots, clock = self.listener, self.slots, self.clock
        family, kind, proto = listener.family, listener.type, listener.proto
        make_socket = self.socket_class
        while clock() < deadline:
            if not slots.acquire(blocking=False):
                return _FULL
            try:
                fd, address = listener._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                slots.release()
                return None
            except OSError as exc:
                slots.release()
                return exc
            sock = make_socket(family, kind, proto, fileno=fd)
            try:
                greenlet = self.admit(sock, address)
            except Exception:  # a bug must cost this connection only, not the accepting
                log.exception("dropped a new connection: admitting it failed")
                sock.close()
                slots.release()
                continue
            if greenlet is not None:
                self._pending.append(greenlet)
        return None

    def _start_pending(self, deadline: float) -> None:
        """Start accepted connections' greenlets, oldest first, at least one, until ``deadline``."""
        pending, clock = self._pending, self.clock
        while pending:
            greenlet = pending.popleft()
            if not greenlet.dead:  # not killed before its turn (a stop, say)
                # From the hub, switching into a new greenlet runs it until it
                # first waits; its wait switches back to here.
                greenlet.switch()
            if clock() >= deadline:
                return

    def stop_accepting(self) -> None:
        """Accept no more; connections accepted already are still started, turn by turn."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None

    def close(self) -> None:
        """Accept no more and start no more (a greenlet never started is the caller's)."""
        self.stop_accepting()
        self._timer.stop()
        self._timer.close()
