"""geventsrv's own cooperative socket: blocking calls for the handler, two system calls per echo.

The handlers call ``recv()`` and ``sendall()`` and wait like any blocking
code; under them, gevent's monkey-patched socket makes three system calls per
echoed request, and usually four: the ``recv`` that returns the request, the
``send``, a ``getsockopt(SO_SNDBUF)`` that gevent's ``sendall`` makes on every
call to size its chunks, and, when the next request is not in yet, a ``recv``
that fails with EAGAIN first (Python builds an exception for it): 3.2 to 3.8
calls per echo measured under a closed-loop load. :class:`CooperativeSocket`
keeps the same blocking interface and makes two:

* it waits for readability *before* ``recv`` when the previous read came up
  short (so the next ``recv`` would almost surely fail), and tries ``recv``
  first after a full buffer (a bulk sender has more waiting);
* ``sendall`` starts with one plain ``send``, and waits for writability only
  for what the kernel did not take.

It waits on a read and a write watcher of its own, kept for the connection's
life, with gevent's public API only: ``hub.loop.io(fd, events)``,
``watcher.start(callback, greenlet)``, ``loop.run_callback``, ``hub.switch()``.

Waiting greenlets are woken in the order the kernel reported their sockets
ready (:class:`ReadyInOrder`), not in the order libev calls the watchers'
callbacks, which is the reverse: libev runs a turn's callbacks last-queued
first. Under a closed loop of thousands of connections, served in reverse
each turn, a connection served first in one turn came last in the next, and
waited two turns for one answer: that doubled the 99th percentile of the
round trip against its median. Every guarantee of
the patched path holds: an exception thrown into the waiting greenlet (the idle
reaper's :class:`~geventsrv.server.IdleTimeout`, a kill at the drain deadline)
stops the watcher on its way out; :meth:`CooperativeSocket.close` from another
greenlet wakes a greenlet waiting on this socket with an ``OSError`` instead of
leaving it parked for ever (gevent's own sockets do the same); back-pressure
is the kernel's, since a ``sendall`` the client does not read waits.

``python -m geventsrv --io patched`` serves through the monkey-patched stdlib
socket instead: the textbook path, kept to compare and to teach.
"""

from __future__ import annotations

import errno
import socket
from functools import partial
from typing import Any

from gevent import get_hub, getcurrent
from gevent.monkey import get_original

#: The standard library's own socket class, even in a monkey-patched process.
PlainSocket: type[socket.socket] = get_original("socket", "socket")

_READ, _WRITE = 1, 2  # libev's and libuv's EV_READ and EV_WRITE


class ReadyInOrder:
    """The greenlets a loop turn found ready, woken in the kernel's order, from the hub.

    The watchers' callback is :meth:`ready`: it stops the watcher (so that it
    cannot fire again before the greenlet runs, when gevent defers the rest of
    a long turn's callbacks past the next poll) and only queues the greenlet
    (and, first in a turn, asks the hub to run :meth:`wake` next). libev calls
    a turn's callbacks in the reverse of the order the kernel reported the
    descriptors, so the queue, read from its end, is in the kernel's order.
    """

    __slots__ = ("_loop", "queued")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self.queued: list[Any] = []

    def ready(self, greenlet: Any, watcher: Any) -> None:
        watcher.stop()
        if not self.queued:
            self._loop.run_callback(self.wake)
        self.queued.append(greenlet)

    def wake(self) -> None:
        queued = self.queued
        while queued:
            # Each runs until it waits again, which switches back to here.
            queued.pop().switch()

    def forget(self, greenlet: Any) -> None:
        """``greenlet`` stopped waiting for another reason (an exception thrown in)."""
        if greenlet in self.queued:
            self.queued.remove(greenlet)


_in_order: dict[int, ReadyInOrder] = {}


def ready_in_order(hub: Any) -> ReadyInOrder:
    """The :class:`ReadyInOrder` of ``hub`` (one per hub, so per thread)."""
    found = _in_order.get(id(hub))
    if found is None or found._loop is not hub.loop:
        found = _in_order[id(hub)] = ReadyInOrder(hub.loop)
    return found


class CooperativeSocket:
    """A connected stream socket whose blocking calls park only the calling greenlet.

    Made from an accepted socket by :meth:`adopt`, which takes over its
    descriptor. Offers what the handlers use (:class:`~geventsrv.connection.StreamSocket`):
    ``recv``, ``sendall``, ``shutdown``, ``close``, ``fileno``, ``getsockname``.
    """

    __slots__ = (
        "_hub", "_in_order", "_read", "_read_waker", "_sock", "_wait_first", "_write",
        "_write_waker",
    )  # fmt: skip

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._hub = get_hub()
        self._in_order = ready_in_order(self._hub)
        #: Each watcher's callback, for the greenlet that waits on it (made once, not
        #: per wait: objects made per wait outlive young collections, by thousands
        #: under load, and bring on full ones).
        self._read_waker: Any = None
        self._write_waker: Any = None
        self._read: Any = self._hub.loop.io(sock.fileno(), _READ)
        self._write: Any = None  # made on first need: most replies fit the send buffer
        #: Wait for readability before the next recv(): the last one came up short.
        #: Not before the first: a client that has just connected has usually
        #: sent its first bytes already, and a wait would cost it a loop turn.
        self._wait_first = False

    @classmethod
    def adopt(cls, sock: socket.socket) -> CooperativeSocket:
        """Take over ``sock``'s descriptor (``sock`` is left detached, owning nothing)."""
        family, kind, proto = sock.family, sock.type, sock.proto
        return cls(PlainSocket(family, kind, proto, fileno=sock.detach()))

    def _wait(self, watcher: Any) -> None:
        # When the descriptor is ready, the watcher queues this greenlet and the
        # hub switches back here in the kernel's order (ReadyInOrder). Anything
        # thrown in meanwhile (idle timeout, kill, close from another greenlet)
        # stops the watcher and takes the greenlet out of the queue on its way
        # out, so that nothing wakes a greenlet that has moved on.
        current = getcurrent()
        reading = watcher is self._read
        waker = self._read_waker if reading else self._write_waker
        if waker is None or waker.args[0] is not current:
            waker = partial(self._in_order.ready, current, watcher)
            if reading:
                self._read_waker = waker
            else:
                self._write_waker = waker
        watcher.start(waker)
        try:
            self._hub.switch()
        except BaseException:
            self._in_order.forget(current)
            raise
        finally:
            if watcher.active:  # not when close() from another greenlet got here first
                watcher.stop()

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes, waiting until some arrive; ``b""`` at the peer's FIN."""
        if self._wait_first:
            self._wait(self._read)
        while True:
            try:
                data = self._sock.recv(size)
            except BlockingIOError:  # a readiness that did not last: wait again
                self._wait(self._read)
                continue
            self._wait_first = len(data) < size
            return data

    def sendall(self, data: bytes | memoryview) -> None:
        """Send every byte of ``data``, waiting while the kernel's buffer is full."""
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            self._wait_writable()
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                continue
            view = view[sent:]

    def _wait_writable(self) -> None:
        if self._write is None:
            self._write = self._hub.loop.io(self._sock.fileno(), _WRITE)
        self._wait(self._write)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        """Close the socket; a greenlet waiting on it (another one) gets an ``OSError``."""
        if self._sock.fileno() < 0:
            return
        for watcher in (self._read, self._write):
            if watcher is None:
                continue
            waiter = watcher.callback.args[0] if watcher.active else None
            watcher.stop()
            watcher.close()
            if waiter is not None and waiter is not getcurrent():
                # Its watcher will never fire now: wake it, from the hub, with an error.
                closed = OSError(errno.EBADF, "socket closed by another greenlet")
                self._hub.loop.run_callback(waiter.throw, closed)
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def getsockname(self) -> Any:
        return self._sock.getsockname()
