"""The HTTP reader over a real socket pair: what it hands out, and what it refuses.

The reader runs in the test's own thread on a plain blocking socket (the test
process is not monkey-patched), which is all it needs: one ``recv`` at a time.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geventsrv.connection import Connection
from geventsrv.http.exchange import HttpError
from geventsrv.http.h1read import MAX_HEAD, RequestReader
from geventsrv.testing.process import CLIENT_TIMEOUT


class CountingSocket:
    """A real socket that counts its ``recv`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    server.settimeout(5)
    client.settimeout(5)
    yield CountingSocket(server), client
    server.close()
    client.close()


def reader_for(sock: CountingSocket) -> RequestReader:
    return RequestReader(Connection(sock, "test:1"), head_timeout=10.0)  # type: ignore[arg-type]


def test_pipelined_requests_in_one_read_cost_one_recv(pair):
    sock, client = pair
    client.sendall(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Echo-Status: 201\r\n\r\nhello"
        b"GET /c HTTP/1.0\r\n\r\n"
    )
    client.shutdown(socket.SHUT_WR)
    reader = reader_for(sock)
    first = reader.next_request()
    assert first is not None and (first.method, first.target, first.version) == (
        b"GET",
        b"/a",
        "1.1",
    )
    assert list(reader.body()) == []
    second = reader.next_request()
    assert second is not None and second.content_length == 5
    assert second.controls == [("status", b"201")]
    assert b"".join(reader.body()) == b"hello"
    third = reader.next_request()
    assert third is not None and third.version == "1.0" and not third.keep_alive
    assert sock.recvs == 1
    assert reader.next_request() is None  # the client closed between requests


def test_an_unread_body_is_skipped_before_the_next_request(pair):
    sock, client = pair
    client.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    reader = reader_for(sock)
    assert reader.next_request() is not None
    following = reader.next_request()  # the body never asked for
    assert following is not None and following.target == b"/next"


def test_100_continue_goes_out_only_when_the_body_is_awaited(pair):
    sock, client = pair
    client.sendall(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    reader = reader_for(sock)
    assert reader.next_request() is not None
    body = reader.body()
    client.sendall(b"ok")
    assert next(body) == b"ok"
    assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # not a method llhttp knows
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (MAX_HEAD * 6), 431),  # never ends
        (b"GET /\r\n\r\n", 505),  # HTTP/0.9
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),  # bare LF
    ],
    ids=["unknown-method", "long-header", "unending-header", "http-0.9", "bare-lf"],
)
def test_what_the_reader_refuses(pair, raw, status):
    sock, client = pair
    client.sendall(raw)
    with pytest.raises(HttpError) as refused:
        reader_for(sock).next_request()
    assert refused.value.status == status and refused.value.reason


def test_a_client_gone_in_the_middle_of_a_body_is_a_connection_error(pair):
    sock, client = pair
    client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    client.shutdown(socket.SHUT_WR)
    reader = reader_for(sock)
    assert reader.next_request() is not None
    with pytest.raises(ConnectionAbortedError):
        list(reader.body())


def test_trailers_are_the_requests_own_not_headers(pair):
    sock, client = pair
    client.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Checksum: 900150983cd24fb0\r\nX-Done: yes\r\n\r\n"
    )
    reader = reader_for(sock)
    request = reader.next_request()
    assert request is not None and b"".join(reader.body()) == b"abc"
    assert request.trailers == [(b"X-Checksum", b"900150983cd24fb0"), (b"X-Done", b"yes")]
    assert [name for name, _ in request.headers] == [b"Host", b"Transfer-Encoding"]


class ChoppingSocket(CountingSocket):
    """A real socket whose reads return at most ``piece`` bytes: heads split anywhere."""

    def __init__(self, sock: socket.socket, piece: int) -> None:
        super().__init__(sock)
        self.piece = piece

    def recv(self, size: int) -> bytes:
        return super().recv(min(size, self.piece))


def message(head: bytes, body: bytes = b"", chunked: bool = False) -> bytes:
    if chunked:
        return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else head + b"0\r\n\r\n"
    return head + body


HEADS = [
    b"GET /a?x=1 HTTP/1.1\r\nHost:   spaced  \r\nX-Tab:\tv \r\n\r\n",
    b"POST /b HTTP/1.1\r\nhost: x\r\nContent-Length: 5\r\n\r\n",
    b"GET /c HTTP/1.0\r\n\r\n",
]


@pytest.mark.parametrize("piece", [1, 2, 7, 64, 65536])
def test_each_head_is_kept_exactly_as_it_arrived_however_it_was_read(pair, piece):
    sock, client = pair
    client.sendall(HEADS[0] + b"\r\n" + HEADS[1] + b"hello" + HEADS[2])  # an empty line too
    client.shutdown(socket.SHUT_WR)
    chopping = ChoppingSocket(sock.sock, piece)
    reader = RequestReader(Connection(chopping, "test:1"), 10.0)  # type: ignore[arg-type]
    for head in HEADS:
        request = reader.next_request()
        assert request is not None and request.raw_head() == head
        list(reader.body())
    assert reader.next_request() is None


def test_a_head_after_a_chunked_body_in_the_same_read_is_not_kept(pair):
    sock, client = pair
    chunked = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.sendall(message(chunked, b"hello", chunked=True) + HEADS[0])
    reader = reader_for(sock)
    first = reader.next_request()
    assert first is not None and first.raw_head() == chunked
    assert b"".join(reader.body()) == b"hello"
    second = reader.next_request()
    assert second is not None and second.raw_head() is None  # where the chunks ended is unknown
    list(reader.body())
    client.sendall(HEADS[2])  # a read of its own: known again
    third = reader.next_request()
    assert third is not None and third.raw_head() == HEADS[2]


KEPT_ALIVE = [
    HEADS[0],
    b"GET /c HTTP/1.1\r\nHost: c\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: d\r\nX-Empty:  \r\nX-Colon::\r\n\r\n",
]
BODY_FRAMINGS = ["", "length", "chunked"]


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from(KEPT_ALIVE), st.sampled_from(BODY_FRAMINGS), st.binary(max_size=30)
        ),
        min_size=1, max_size=5,
    ),
    piece=st.integers(1, 200),
)  # fmt: skip
def test_a_kept_head_is_always_the_one_sent(messages, piece):
    """Whatever the reads: a head is the exact bytes sent, or not kept, and then only
    because a chunked body came before it (in the same read, which the test does not
    control: reads are cut every ``piece`` bytes)."""
    server, client = socket.socketpair()
    server.settimeout(5)
    client.settimeout(5)
    sent = []
    stream = b""
    for head, framing, body in messages:
        if framing == "length":
            head = head.replace(b"\r\n\r\n", b"\r\nContent-Length: %d\r\n\r\n" % len(body), 1)
            stream += head + body
        elif framing == "chunked":
            head = head.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n", 1)
            stream += message(head, body, chunked=True)
        else:
            stream += head
        sent.append((head, framing))
    with server, client:
        client.sendall(stream)
        client.shutdown(socket.SHUT_WR)
        chopping = ChoppingSocket(server, piece)
        reader = RequestReader(Connection(chopping, "test:1"), 10.0)  # type: ignore[arg-type]
        chunked_before = False
        for head, framing in sent:
            request = reader.next_request()
            assert request is not None
            kept = request.raw_head()
            assert kept == head or (kept is None and chunked_before)
            list(reader.body())
            chunked_before = chunked_before or framing == "chunked"


def test_a_steady_pipeline_whose_reads_end_mid_head_is_served_whole(pair):
    """Each read ends inside a head: only that head counts toward the bound, not the
    requests before it in the read (nor the reads before)."""
    sock, client = pair
    request = b"GET /p HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 50 + b"\r\n\r\n"
    count = 3000  # about 250 KB: far past the head bound and one read
    sender = threading.Thread(target=client.sendall, args=(request * count,))
    sender.start()
    chopping = ChoppingSocket(sock.sock, 1001)  # never a whole number of requests
    reader = RequestReader(Connection(chopping, "test:1"), 10.0)  # type: ignore[arg-type]
    for _ in range(count):
        got = reader.next_request()
        assert got is not None and got.raw_head() == request
        list(reader.body())
    sender.join(CLIENT_TIMEOUT)


def test_a_pipeline_longer_than_the_head_timeout_is_timed_head_by_head(pair):
    """Reads that each end mid-head, for longer than the head timeout: each head has its own
    time, counted from its own first bytes, so none is late (a head is cut only when it
    takes longer than the timeout itself)."""
    sock, client = pair
    request = b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n"
    count = 60
    stream = request * count
    # A request and a byte: a read ends between two requests only every 28th, 1.4 s apart,
    # longer than the timeout; the others end inside a head.
    piece = len(request) + 1

    def trickle() -> None:
        for start in range(0, len(stream), piece):
            client.sendall(stream[start : start + piece])
            time.sleep(0.05)  # about three seconds in all: three head timeouts

    sender = threading.Thread(target=trickle)
    sender.start()
    reader = RequestReader(Connection(sock, "test:1"), head_timeout=1.0)
    for _ in range(count):
        got = reader.next_request()
        assert got is not None and got.target == b"/t"
        list(reader.body())
    sender.join(CLIENT_TIMEOUT)
