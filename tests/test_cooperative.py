"""geventsrv's cooperative socket, in-process on real socket pairs, under gevent's real hub.

The test process is not monkey-patched: the socket under test is the standard
library's, driven by gevent's watchers, as in the server. The peers are plain
sockets too, used from greenlets only in ways that never block (non-blocking
sends, reads after a wait).
"""

from __future__ import annotations

import contextlib
import errno
import socket

import gevent
import pytest

from geventsrv.cooperative import CooperativeSocket


@pytest.fixture
def pair():
    """(CooperativeSocket, the plain peer socket); both closed afterwards."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    sock = CooperativeSocket.adopt(ours)
    yield sock, peer
    sock.close()
    peer.close()


def test_adopt_takes_over_the_descriptor():
    ours, peer = socket.socketpair()
    fd = ours.fileno()
    sock = CooperativeSocket.adopt(ours)
    assert sock.fileno() == fd and ours.fileno() == -1  # the original owns nothing now
    sock.close()
    peer.close()


def test_recv_parks_only_its_greenlet_until_data_arrives(pair):
    sock, peer = pair
    reader = gevent.spawn(sock.recv, 100)
    ticks = 0
    for _ in range(5):  # the hub keeps turning while the reader waits
        gevent.sleep(0.001)
        ticks += 1
    assert not reader.ready() and ticks == 5
    peer.send(b"hello")
    assert reader.get(timeout=5) == b"hello"


def test_recv_returns_what_is_there_and_then_eof(pair):
    sock, peer = pair
    peer.send(b"a" * 70_000)
    first = sock.recv(65536)
    assert len(first) == 65536  # a full buffer: the next recv tries at once
    assert sock.recv(65536) == b"a" * (70_000 - 65536)
    peer.shutdown(socket.SHUT_WR)
    assert gevent.spawn(sock.recv, 10).get(timeout=5) == b""


def test_sendall_waits_for_a_slow_reader_then_delivers_every_byte(pair, rng):
    sock, peer = pair
    payload = rng.randbytes(3_000_000)  # far more than the socket buffers hold
    sender = gevent.spawn(sock.sendall, payload)
    gevent.sleep(0.05)
    assert not sender.ready()  # back-pressure: it waits for the reader
    received = bytearray()
    while len(received) < len(payload):
        gevent.sleep(0.001)
        with contextlib.suppress(BlockingIOError):
            received += peer.recv(1 << 20)
    sender.get(timeout=5)
    assert bytes(received) == payload


def test_the_peer_closing_ends_a_waiting_recv(pair):
    sock, peer = pair
    reader = gevent.spawn(sock.recv, 10)
    gevent.sleep(0.01)
    peer.close()  # on a socket pair: the reader sees EOF (AF_UNIX has no RST)
    assert reader.get(timeout=5) == b""


def test_an_exception_thrown_into_a_waiter_stops_its_watcher(pair):
    """The idle reaper's way: the waiter leaves with the exception, and the socket works after."""
    sock, peer = pair
    reader = gevent.spawn(sock.recv, 10)
    gevent.sleep(0.01)
    assert sock._read.active  # parked on its read watcher
    reader.kill(TimeoutError, block=True, timeout=5)
    assert isinstance(reader.exception, TimeoutError)
    # Left started, the watcher would fire later into a greenlet that moved on.
    assert not sock._read.active
    peer.send(b"later")
    gevent.sleep(0.01)  # a watcher left running would switch into the dead greenlet here
    assert gevent.spawn(sock.recv, 10).get(timeout=5) == b"later"


def test_an_exception_thrown_into_a_blocked_sender_stops_its_write_watcher(pair):
    sock, _ = pair
    sender = gevent.spawn(sock.sendall, b"x" * 3_000_000)  # more than the buffers hold
    gevent.sleep(0.05)
    assert sock._write is not None and sock._write.active
    sender.kill(TimeoutError, block=True, timeout=5)
    assert isinstance(sender.exception, TimeoutError)
    assert not sock._write.active


def test_close_from_another_greenlet_wakes_the_waiter_with_an_error(pair):
    sock, _ = pair
    reader = gevent.spawn(sock.recv, 10)
    gevent.sleep(0.01)
    sock.close()
    with pytest.raises(OSError) as caught:
        reader.get(timeout=5)
    assert caught.value.errno == errno.EBADF
    sock.close()  # twice is harmless


def test_shutdown_from_another_greenlet_ends_both_directions(pair):
    """Chat drops a member this way: its reader gets EOF, its writer an error."""
    sock, _ = pair
    reader = gevent.spawn(sock.recv, 10)
    gevent.sleep(0.01)
    sock.shutdown(socket.SHUT_RDWR)
    assert reader.get(timeout=5) == b""
    with pytest.raises(OSError):
        sock.sendall(b"x")


def test_waiting_greenlets_wake_in_the_order_their_sockets_became_ready():
    """libev runs a turn's callbacks last-ready first; served so, a connection first in
    one turn would be last in the next and wait two turns for one answer (under 10,000
    busy connections, that doubled the round trip's 99th percentile against its median)."""
    pairs = [socket.socketpair() for _ in range(50)]
    socks = [CooperativeSocket.adopt(ours) for ours, _ in pairs]
    woken: list[int] = []

    def reader(number: int) -> None:
        socks[number].recv(1)  # waits: the first recv of a connection reads at once, so
        socks[number].recv(1)  # the second, after a short read, is the one that waits
        woken.append(number)

    for _, peer in pairs:
        peer.send(b"a")
    greenlets = [gevent.spawn(reader, number) for number in range(len(socks))]
    gevent.sleep(0.05)  # every reader parked in its second recv
    assert woken == []
    order = list(range(len(socks)))
    for number in order[::3] + order[1::3] + order[2::3]:  # ready in a shuffled order
        pairs[number][1].send(b"b")
    gevent.joinall(greenlets, timeout=5)
    assert woken == order[::3] + order[1::3] + order[2::3]
    for sock, (_, peer) in zip(socks, pairs, strict=True):
        sock.close()
        peer.close()


def test_a_greenlet_killed_while_queued_to_wake_is_not_woken():
    """Its socket was ready (its watcher fired and queued it), then an exception was thrown
    in (the idle reaper, a kill) before the queue was woken: the queue forgets it."""
    ours, peer = socket.socketpair()
    sock = CooperativeSocket.adopt(ours)
    peer.send(b"x")
    waiting = gevent.spawn(lambda: (sock.recv(1), sock.recv(1)))
    gevent.sleep(0.01)  # parked in the second recv, its watcher started
    in_order = sock._in_order
    in_order.ready(waiting, sock._read)  # as its watcher does when the socket turns ready
    assert in_order.queued == [waiting]
    # Stopped: it cannot fire again, and queue the greenlet twice, before the queue is woken
    # (gevent may defer a long turn's callbacks past the next poll).
    assert not sock._read.active
    waiting.kill(block=True)
    assert waiting.dead and in_order.queued == []
    peer.send(b"y")
    gevent.sleep(0.02)  # nothing switches into the dead greenlet, nothing raises
    sock.close()
    peer.close()
