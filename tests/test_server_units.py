"""The server's decisions, in-process and without a network: accept errors, back-off,
the rate-limited log, the idle reaper and the accept loop itself.

A fake listener stands in for a socket whose accept() fails on cue (EMFILE and
EBADF cannot be produced on demand from a real one without starving the test
process), and a fake clock or sleep records the pauses instead of waiting them.
Everything else is real: gevent's hub, greenlets, the server's own loop.
"""

from __future__ import annotations

import errno
import logging
import socket

import gevent
import pytest
from gevent.event import Event

from geventsrv.config import Config
from geventsrv.connection import Connection
from geventsrv.server import AcceptErrors, EchoServer, IdleReaper, IdleTimeout, RateLimitedLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="geventsrv.server")
    return caplog


def error(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, "?"))


def test_rate_limited_log_says_how_many_it_held_back(logs):
    clock = FakeClock()
    line = RateLimitedLog(5.0, clock=clock)
    for _ in range(4):
        line(logging.WARNING, "out of %s", "files")
        clock.now += 1
    clock.now += 1  # 5 s after the first
    line(logging.WARNING, "out of %s", "files")
    messages = [r.getMessage() for r in logs.records]
    assert messages == ["out of files", "out of files (3 similar suppressed)"]


def test_accept_errors_are_sorted_by_errno():
    errors = AcceptErrors(0.01, 1.0, RateLimitedLog(5.0))
    assert errors.failed(error(errno.ECONNABORTED), 0) == 0.0
    assert errors.count == 0  # one queued connection's trouble is not counted
    assert errors.failed(error(errno.EMFILE), 3) == 0.01
    assert errors.failed(error(errno.EBADF), 3) is None


def test_back_off_doubles_to_its_ceiling_and_resets_on_success(logs):
    errors = AcceptErrors(0.01, 1.0, RateLimitedLog(5.0))
    pauses = [errors.failed(error(errno.EMFILE), 10) for _ in range(9)]
    assert pauses == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0]
    warnings = [r for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the other eight fell within the log interval
    errors.succeeded()
    assert errors.backoff == 0.0
    assert logs.records[-1].getMessage() == "accepting again"
    assert errors.failed(error(errno.ENFILE), 0) == 0.01


class FakeListener:
    """accept() answers from a script: an errno to raise, or "ok" for a real TCP connection.

    The connections are real (loopback, through a real listening socket); only
    the failures are staged.
    """

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.clients: list[socket.socket] = []
        self.real = socket.create_server(("127.0.0.1", 0))

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        gevent.idle()  # a real listener waits here for the next client: let the loop turn
        step = self.script.pop(0)
        if isinstance(step, int):
            raise error(step)
        client = socket.create_connection(self.real.getsockname(), timeout=5)
        self.clients.append(client)
        return self.real.accept()


def test_accept_loop_backs_off_serves_and_stops_when_the_listener_dies(monkeypatch):
    served: list[Connection] = []
    server = EchoServer(Config(port=0), handler=served.append)
    pauses: list[float] = []
    real_sleep = gevent.sleep
    monkeypatch.setattr(gevent, "sleep", lambda seconds=0: pauses.append(seconds) or real_sleep(0))
    listener = FakeListener(
        [errno.EMFILE, errno.EMFILE, errno.ECONNABORTED, "ok", errno.EMFILE, "ok", errno.EBADF]
    )
    loop = gevent.spawn(server._accept_loop, listener)  # type: ignore[arg-type]
    loop.join(5)
    gevent.sleep(0)
    assert loop.dead and not listener.script
    assert pauses[:3] == [0.01, 0.02, 0.01]  # doubled, then reset by the accepted connection
    assert [conn.peer for conn in served] == [
        f"127.0.0.1:{client.getsockname()[1]}" for client in listener.clients
    ]
    assert server.stats.accepted == 2 and server.stats.accept_errors == 4
    assert server.connection_count == 0  # each handler returned, each slot came back
    assert server._stopped.wait(5)  # EBADF stopped the server
    for client in listener.clients:
        assert client.recv(1) == b""  # the server closed its end
        client.close()
    listener.real.close()


def test_idle_reaper_kills_only_connections_without_progress():
    hold = Event()
    killed: list[str] = []

    def park(conn: Connection) -> None:
        try:
            hold.wait()
        except IdleTimeout:
            killed.append(conn.peer)

    connections: dict[gevent.Greenlet[[Connection], None], Connection] = {}
    for name in ("busy", "idle"):
        conn = Connection(socket.socket(), name)
        connections[gevent.spawn(park, conn)] = conn
    gevent.sleep(0)
    reaper = IdleReaper(10.0, connections)
    busy = next(c for c in connections.values() if c.peer == "busy")
    assert reaper.sweep(0.0) == 0
    busy.bytes_echoed += 5
    assert reaper.sweep(9.9) == 0
    busy.progress += 1
    assert reaper.sweep(10.0) == 1  # idle for 10 s; busy moved at 9.9 s
    gevent.sleep(0)
    assert killed == ["idle"]
    assert reaper.sweep(30.0) == 1  # busy, still since 10.0
    assert reaper.sweep(40.0) == 0  # killed once is enough
    gevent.sleep(0)
    assert killed == ["idle", "busy"]
    for greenlet, conn in list(connections.items()):
        del connections[greenlet]
        conn.sock.close()
    reaper.sweep(50.0)
    assert not reaper._seen  # forgets closed connections
