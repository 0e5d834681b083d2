"""The server's loop, in-process: the accept loop against a staged listener, and the idle reaper.

A fake listener stands in for a socket whose accept() fails on cue (EMFILE and
EBADF cannot be produced on demand from a real one without starving the test
process), and a fake clock or sleep records the pauses instead of waiting them.
Everything else is real: gevent's hub, greenlets, the server's own loop.
"""

from __future__ import annotations

import errno
import socket
from typing import cast

import gevent
import gevent.socket
from gevent.event import Event
from support import os_error

from geventsrv.config import Config
from geventsrv.connection import Connection
from geventsrv.server import EchoServer, IdleReaper, IdleTimeout


class FakeListener:
    """accept() answers from a script: an errno to raise, or "ok" for a real TCP connection.

    The connections are real (loopback, through a real listening socket, whose
    readiness the server waits on); only the failures are staged. One extra
    client, never accepted, keeps the listener readable between the steps.
    """

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.real = socket.create_server(("127.0.0.1", 0))
        self.real.setblocking(False)
        self.family, self.type, self.proto = self.real.family, self.real.type, self.real.proto
        address = self.real.getsockname()
        oks = sum(step == "ok" for step in script)
        self.clients = [socket.create_connection(address, timeout=5) for _ in range(oks)]
        self.keeper = socket.create_connection(address, timeout=5)

    def fileno(self) -> int:
        return self.real.fileno()

    def _accept(self) -> tuple[int, tuple[str, int]]:
        step = self.script.pop(0)
        if isinstance(step, int):
            raise os_error(step)
        return self.real._accept()  # type: ignore[attr-defined]


def test_accept_loop_backs_off_serves_and_stops_when_the_listener_dies(monkeypatch):
    served: list[Connection] = []
    server = EchoServer(Config(port=0), handler=served.append)
    pauses: list[float] = []
    real_sleep = gevent.sleep

    def record_pause(seconds: float = 0) -> None:
        pauses.append(seconds)
        real_sleep(0)

    monkeypatch.setattr(gevent, "sleep", record_pause)
    listener = FakeListener(
        [errno.EMFILE, errno.EMFILE, errno.ECONNABORTED, "ok", errno.EMFILE, "ok", errno.EBADF]
    )
    loop = gevent.spawn(server._accept_loop, cast(socket.socket, listener))  # a stand-in
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
    busy.bytes_received += 5
    assert reaper.sweep(9.9) == 0
    busy.bytes_sent += 1
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
