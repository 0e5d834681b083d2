"""A multiplexed request stream's state: what its greenlet takes, when it waits, how it ends.

The state is driven here as the connection's greenlet drives it (pieces put in the inbox,
``wake``), with real greenlets; the fronts that use it (HTTP/2, HTTP/3) are tested over
real connections in ``test_http_h2.py`` and ``test_http_h3.py``.
"""

from __future__ import annotations

import gevent
import pytest

from geventsrv.connection import Drained
from geventsrv.http.streams import JOINED_PIECE, StreamGone, StreamState


class JoiningState(StreamState):
    __slots__ = ()
    join_up_to = JOINED_PIECE


def test_pieces_are_taken_as_they_came_unless_the_front_joins_them():
    stream = StreamState(1)
    stream.inbox.extend([b"a" * 1000, b"b"])
    assert stream.take(False) == b"a" * 1000
    assert stream.take(False) == b"b"


def test_what_arrived_together_is_taken_as_one_piece_up_to_the_bound():
    stream = JoiningState(1)
    stream.inbox.extend([b"a" * 1000, b"b" * 1000, b"c"])
    assert stream.take(False) == b"a" * 1000 + b"b" * 1000 + b"c"
    assert stream.take(False) is None  # nothing more yet: the caller waits

    pieces = [bytes([n]) * 40000 for n in range(3)]
    stream.inbox.extend(pieces)
    first = stream.take(False)
    assert first == pieces[0] + pieces[1] and len(first) >= JOINED_PIECE  # the bound is met
    assert stream.take(False) == pieces[2]


def test_the_end_comes_after_every_piece_and_a_reset_is_raised():
    stream = StreamState(1)
    stream.inbox.append(b"last")
    stream.ended = True
    assert stream.take(False) == b"last"
    assert stream.take(False) == b""

    gone = StreamState(3)
    gone.reset = "reset by the client (code 8)"
    with pytest.raises(StreamGone, match="code 8"):
        gone.take(False)


def test_a_tunnel_waiting_at_a_stop_is_interrupted_once():
    stream = StreamState(1)
    assert stream.take(True) is None  # not a tunnel: a stop does not interrupt a body's wait
    stream.tunnel = True
    with pytest.raises(Drained):
        stream.take(True)
    assert stream.take(True) is None  # once: it may read on after that


def test_a_waiting_greenlet_is_woken_by_what_arrives():
    stream = StreamState(1)
    taken = []

    def application():
        while (piece := stream.take(False)) is None:
            stream.wait()
        taken.append(piece)

    reader = gevent.spawn(application)
    gevent.sleep(0.01)
    assert not taken and not reader.dead  # parked in wait()
    stream.inbox.append(b"hello")
    stream.wake()
    reader.join(timeout=5)
    assert taken == [b"hello"]
    assert stream.wait(timeout=0.01) is False  # nothing since: a timed wait says so
