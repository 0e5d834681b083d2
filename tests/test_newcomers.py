"""Newcomers: accepting and starting connections from the hub, over a real listening socket.

gevent's hub, the greenlets and the TCP connections are real; a fake clock,
moved by each admitted connection, stands in for the time a start takes where
a test is about the share of a turn (real starts are too fast to exhaust it
reliably, and a busy machine would make them exhaust it at random).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gevent
import gevent.socket
import pytest
from gevent.lock import Semaphore

from geventsrv.newcomers import Newcomers


class StepClock:
    """A clock that stands still: the tests move it by setting ``now``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def queued(count: int) -> Iterator[tuple[gevent.socket.socket, list[socket.socket]]]:
    """A listener with ``count`` clients connected and waiting in its accept queue."""
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(count)]
    try:
        yield listener, clients
    finally:
        for client in clients:
            client.close()
        listener.close()


class Recorder:
    """An ``admit`` that makes a greenlet per socket, recording when each was started."""

    def __init__(
        self, clock: StepClock | None = None, step: float = 0.0, start_step: float = 0.0
    ) -> None:
        # How far the clock moves as each connection is admitted, and as each starts.
        self.clock, self.step, self.start_step = clock, step, start_step
        self.admitted: list[int] = []  # client ports, in accept order
        self.started: list[tuple[int, int]] = []  # (client port, loop iteration)
        self.sockets: list[socket.socket] = []
        self.greenlets: list[gevent.Greenlet[..., None]] = []

    def __call__(self, sock: socket.socket, address: tuple[str, int]) -> gevent.Greenlet:
        if self.clock is not None:
            self.clock.now += self.step
        self.sockets.append(sock)
        self.admitted.append(address[1])
        greenlet = gevent.Greenlet(self._run, address[1])
        self.greenlets.append(greenlet)
        return greenlet

    def _run(self, port: int) -> None:
        if self.clock is not None:
            self.clock.now += self.start_step
        self.started.append((port, gevent.get_hub().loop.iteration))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    with gevent.Timeout(seconds):
        while not condition():
            gevent.sleep(0.001)


def test_queued_connections_are_accepted_and_started_in_order_in_one_batch():
    with queued(50) as (listener, clients):
        admit = Recorder()
        newcomers = Newcomers(listener, Semaphore(100), admit)
        runner = gevent.spawn(newcomers.run)
        wait_for(lambda: len(admit.started) == 50)
        ports = [client.getsockname()[1] for client in clients]
        assert admit.admitted == ports  # the kernel's queue, oldest first
        assert [port for port, _ in admit.started] == ports
        assert len({iteration for _, iteration in admit.started}) == 1  # one batch
        runner.kill()
        newcomers.close()
        admit.close()


def test_the_share_follows_the_rest_of_the_turn_between_floor_and_ceiling():
    clock = StepClock()
    with queued(0) as (listener, _):
        newcomers = Newcomers(listener, Semaphore(1), Recorder(), clock=clock)
        newcomers._last_batch_end = 10.0
        assert newcomers.share(10.0) == newcomers.floor  # nothing else ran
        assert newcomers.share(10.001) == pytest.approx(newcomers.ratio * 0.001)
        assert newcomers.share(15.0) == newcomers.ceiling  # a long turn: capped
        newcomers.close()


def test_a_spent_share_lets_the_hub_turn_and_the_rest_follows_in_later_turns():
    """Each admitted connection "takes" 1 ms: the floor's 5 ms are spent after a few, and a
    timer due at once runs before the queue is worked off, not after."""
    clock = StepClock()
    with queued(200) as (listener, clients):
        admit = Recorder(clock, step=0.001)
        newcomers = Newcomers(listener, Semaphore(1000), admit, clock=clock)
        newcomers._last_batch_end = clock.now
        seen: list[int] = []
        gevent.get_hub().loop.timer(0.0).start(lambda: seen.append(len(admit.started)))
        runner = gevent.spawn(newcomers.run)
        wait_for(lambda: len(admit.started) == 200)
        assert seen and seen[0] < 200, seen
        ports = [client.getsockname()[1] for client in clients]
        assert [port for port, _ in admit.started] == ports  # every one, still in order
        assert len({iteration for _, iteration in admit.started}) > 1
        runner.kill()
        newcomers.close()
        admit.close()


def test_a_connection_killed_while_pending_never_runs():
    clock = StepClock()
    with queued(8) as (listener, _):
        # Accepting takes no time here and the first start spends the whole floor:
        # all 8 are accepted in the first batch, 7 left to start in later turns.
        admit = Recorder(clock, start_step=0.01)
        newcomers = Newcomers(listener, Semaphore(100), admit, clock=clock)
        newcomers._last_batch_end = clock.now
        first_run = admit._run

        def kill_the_last_pending(port: int) -> None:  # the first start does it
            first_run(port)
            if len(admit.started) == 1:
                assert len(admit.admitted) == 8 and not admit.greenlets[-1]  # not started
                admit.greenlets[-1].kill(block=False)

        admit._run = kill_the_last_pending  # type: ignore[method-assign]
        runner = gevent.spawn(newcomers.run)
        wait_for(lambda: len(admit.started) == 7)
        gevent.sleep(0.05)  # time for an eighth, which must not come
        assert [port for port, _ in admit.started] == admit.admitted[:-1]
        assert admit.greenlets[-1].dead and len(admit.started) == 7
        runner.kill()
        newcomers.close()
        admit.close()


def test_without_a_free_slot_the_caller_takes_over_and_the_backlog_waits():
    with queued(5) as (listener, clients):
        slots = Semaphore(3)
        admit = Recorder()
        newcomers = Newcomers(listener, slots, admit)
        assert gevent.spawn(newcomers.run).get(timeout=5) is None  # every slot taken
        assert len(admit.admitted) == 3
        slots.release(), slots.release()
        runner = gevent.spawn(newcomers.run)
        wait_for(lambda: len(admit.started) == 5)
        assert admit.admitted == [client.getsockname()[1] for client in clients]
        runner.kill()
        newcomers.close()
        admit.close()


def test_connections_accepted_before_accepting_stops_are_still_started():
    """A stop kills the caller of run(): what was accepted by then still starts (and can
    finish its drain), later turns; only close() gives up on the rest."""
    clock = StepClock()
    with queued(8) as (listener, _):
        admit = Recorder(clock, start_step=0.01)  # one start per batch: 7 left pending
        newcomers = Newcomers(listener, Semaphore(100), admit, clock=clock)
        newcomers._last_batch_end = clock.now
        runner = gevent.spawn(newcomers.run)
        wait_for(lambda: len(admit.admitted) == 8)
        runner.kill()
        newcomers.stop_accepting()
        wait_for(lambda: len(admit.started) == 8)
        assert [port for port, _ in admit.started] == admit.admitted
        with pytest.raises(RuntimeError, match="no longer accepting"):
            newcomers.run()
        newcomers.close()
        admit.close()


def test_an_admit_that_raises_costs_only_its_own_connection(caplog):
    with queued(3) as (listener, clients):
        admit = Recorder()
        record = admit.__call__
        calls: list[int] = []

        def admit_with_a_bug(sock: socket.socket, address: tuple[str, int]) -> gevent.Greenlet:
            calls.append(address[1])
            if len(calls) == 2:
                raise ValueError("a bug in admitting")
            return record(sock, address)

        slots = Semaphore(10)
        newcomers = Newcomers(listener, slots, admit_with_a_bug)
        runner = gevent.spawn(newcomers.run)
        wait_for(lambda: len(admit.started) == 2)
        assert calls == [client.getsockname()[1] for client in clients]
        assert clients[1].recv(1) == b""  # closed, not left hanging
        assert slots.counter == 10 - 2  # the failed one's slot came back
        assert "admitting it failed" in caplog.text and "a bug in admitting" in caplog.text
        runner.kill()
        newcomers.close()
        admit.close()
