"""HTTP/1.1's requests, read off one blocking socket with llhttp.

The parser is llhttp (Node.js's HTTP parser, through ``httptools``): sans-IO,
it never touches the socket. :class:`RequestReader` is the blocking-style
loop around it: ``recv()`` what the socket has, feed it, hand out what the
parser found (a request head, pieces of its body, its trailers and end) one at
a time, and
``recv()`` again only when nothing is left. So a greenlet serving a
connection parks in exactly one place, ``recv``, and pipelined requests that
arrived in one read are answered without another system call.

What the reader bounds, since a peer controls it all:

* the head (request line and headers): at most ``max_head`` bytes (431
  past it), and at most ``head_timeout`` seconds to arrive once begun (408):
  a slowloris trickling one byte at a time costs its connection, for a bounded
  time. The timer is armed only when a head does not arrive in one read, so
  the usual request pays nothing for it;
* what it holds: never more than one read's worth of parsed events; a body is
  handed out as it arrives, so a handler that streams it holds one piece.

It enforces what llhttp leaves to the server (RFC 9112): an HTTP/1.1 request
has exactly one ``Host``; versions other than 1.0 and 1.1 get 505, HTTP/0.9's
one-line request among them (llhttp would wait for its head to end). llhttp
itself refuses the rest: malformed lines, ``Content-Length`` beside
``Transfer-Encoding`` (request smuggling), bad chunk sizes, obsolete line
folding, bare LF. Unknown methods get 400 too: llhttp accepts the methods
registered with IANA (PURGE, PROPFIND, QUERY...), not any token.

Each request keeps where its head lies in what was read (:attr:`Request.raw`), so the
head can be shown exactly as it arrived, line endings and whitespace included: llhttp
says only what a head holds, so the reader finds where it is. A head ends at its first
empty line (llhttp refuses anything else) and begins where the message before it ended:
at the start of a read, after the head before it, or after a body of known length. What
cannot be known is where a chunked body ended (llhttp does not say): the heads that follow
one in the same read are not kept, until a read begins between two messages again.

The answers are written by the front, :mod:`geventsrv.http.h1`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from time import monotonic
from typing import TYPE_CHECKING

import gevent
import httptools

from geventsrv.connection import RECV_SIZE
from geventsrv.http.exchange import Header, HttpError, Request, skip_line_ends

if TYPE_CHECKING:
    from geventsrv.connection import Connection
    from geventsrv.http.exchange import Exchange

#: The largest request head (request line and headers) by default; past it, 431.
MAX_HEAD = 16 * 1024
VERSIONS = ("1.1", "1.0")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class PrefaceSeen(Exception):
    """The connection opened with HTTP/2's preface (prior knowledge): ``data``, the bytes
    read, are the HTTP/2 front's to go on with."""

    def __init__(self, data: bytes) -> None:
        super().__init__("the HTTP/2 preface")
        self.data = data


class EndOfMessage:
    """The end of a request's body (the parser's ``on_message_complete``)."""


END = EndOfMessage()


class _Collector:
    """The parser's callbacks. They only record: the reader acts after ``feed_data``."""

    def __init__(self, max_head: int) -> None:
        self.max_head = max_head
        self.parser: httptools.HttpRequestParser | None = None
        self.events: deque[Request | bytes | EndOfMessage] = deque()
        self.in_head = False
        self._target: list[bytes] = []
        self._headers: list[Header] = []
        #: Where fields go: the head's headers, then (after the head) the trailers.
        self._fields = self._headers
        self._size = 0
        #: A request whose body a new parser is about to read, after a made-up head.
        self._resumed: Request | None = None
        #: The read being fed, and where in it the next message may begin (``-1``: not
        #: known, after a chunked body), or, while ``last_head`` is set, after the head
        #: that begins there and ``body_seen`` bytes of body: found only when another head
        #: follows in the same read, so a read of one request costs no search.
        self.data = b""
        self.scan_from = 0
        self.last_head = -1
        self.body_seen = 0
        #: The start of a head that began in an earlier read, and what came of it since.
        self.partial: bytes | None = None
        #: Heads parsed so far (a read that ends in a head began it after the last one).
        self.heads = 0
        #: Whether a body is being read, and whether it is chunked.
        self.in_body = False
        self._chunked = False

    def begin_read(self, data: bytes) -> None:
        """``data`` is about to be fed: where a message may begin in it."""
        self.data = data
        self.last_head = -1
        if self.in_head:  # a head going on from the read before: kept in ``partial``, if known
            self.scan_from = 0 if self.partial is not None else -1
        elif self.in_body:  # a body's rest comes first: known only when its length is
            self.scan_from = -1 if self._chunked else 0
        else:
            self.scan_from = 0

    def end_read(self) -> None:
        """``data`` is fed and a head is unfinished: kept for the next read."""
        if self.partial is not None:
            self.partial += self.data
        elif (start := self._next_start()) >= 0:
            self.partial = self.data[skip_line_ends(self.data, start) :]

    def _next_start(self) -> int:
        """Where the next message may begin in this read (``-1``: not known)."""
        if self.last_head >= 0:
            data = self.data
            end = data.find(b"\r\n\r\n", skip_line_ends(data, self.last_head)) + 4
            self.scan_from, self.last_head = end + self.body_seen, -1
        return self.scan_from

    def resume_body(self, request: Request) -> None:
        """The next head is made up to read ``request``'s body: it is no request."""
        self._resumed = request

    def on_message_begin(self) -> None:
        self.in_head = True
        self._target = []
        self._headers = self._fields = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._target.append(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))  # trailers are bounded with the head
        self._count(len(name) + len(value) + 4)

    def _count(self, size: int) -> None:
        self._size += size
        if self._size > self.max_head:
            raise HttpError(431, f"request head over {self.max_head} bytes")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads += 1
        raw = self._locate_head()
        resumed = self._resumed
        if resumed is not None:
            self._fields, self._resumed = resumed.trailers, None
            self.in_body, self._chunked = True, resumed.chunked
            if resumed.chunked:
                self.scan_from = self.last_head = -1
            return
        parser = self.parser
        assert parser is not None
        request = Request(
            parser.get_method(),
            b"".join(self._target),
            parser.get_http_version(),
            self._headers,
            parser.should_keep_alive(),
        )
        request.raw = raw
        self._fields = request.trailers
        self.in_body, self._chunked = True, request.chunked
        if request.chunked:  # the chunks' framing: where the message ends is not said
            self.scan_from = self.last_head = -1
        self.events.append(request)

    def _locate_head(self) -> tuple[bytes, int] | None:
        """Where the head just parsed lies: (the bytes holding it, where it begins, empty
        lines before it aside); ``None`` where that is not known."""
        partial = self.partial
        if partial is not None:  # it began in an earlier read: joined, and its end found now
            self.partial = None
            buffer = partial + self.data
            self.scan_from = buffer.find(b"\r\n\r\n") + 4 - len(partial)
            return buffer, 0
        start = self._next_start()  # no search unless a head came before it in this read
        if start < 0:
            return None
        self.last_head, self.body_seen = start, 0
        return self.data, start

    def on_body(self, data: bytes) -> None:
        if self.last_head >= 0:  # a body of known length: its pieces lie end to end
            self.body_seen += len(data)
        elif self.scan_from >= 0:
            self.scan_from += len(data)
        self.events.append(data)

    def on_message_complete(self) -> None:
        self.in_body = False
        self.events.append(END)


class RequestReader:
    """The requests arriving on one connection, read as the handler asks for them."""

    def __init__(
        self, conn: Connection, head_timeout: float, max_head: int = MAX_HEAD, h2: bool = False
    ) -> None:
        self.conn = conn
        self.head_timeout = head_timeout
        self.max_head = max_head
        #: Whether the HTTP/2 preface opening the connection is handed over
        #: (:class:`PrefaceSeen`) rather than refused with 505.
        self.h2 = h2
        #: Header lines every response on the connection carries (see ``h1.serve``).
        self.announce = b""
        self._collector = _Collector(max_head)
        self._parser = httptools.HttpRequestParser(self._collector)
        self._collector.parser = self._parser
        self._events = self._collector.events
        self._pending_head = 0
        self._head_deadline: float | None = None
        #: Whether the client of the request under way waits for a ``100 Continue`` it
        #: has not had: it may or may not send its body, so the connection cannot go on
        #: after a response that leaves the body unread.
        self.awaiting_continue = False
        #: Whether the server will still send it (the body is wanted).
        self._continue_due = False
        #: What followed an ``Upgrade`` request in its read: the new protocol's
        #: first bytes if the handler switches, else the next request's.
        self._after_upgrade: bytes | None = None
        #: The connection's bytes while its first request line may still be
        #: arriving, to tell HTTP/0.9 (``GET /`` and a line end, no version);
        #: ``None`` once the first head is in.
        self._opening: bytes | None = b""

    def next_request(self) -> Request | None:
        """The next request's head; ``None`` when the client closed between requests,
        or the server is stopping and none had begun.

        Raises :class:`HttpError` for a request to refuse. Whatever the
        handler left unread of the previous request's body is read and dropped.
        """
        events = self._events
        while True:
            while events:
                event = events.popleft()
                if type(event) is Request:
                    return self._admit(event)
            if self._after_upgrade is not None:  # not taken: HTTP/1.1 goes on
                rest, self._after_upgrade = self._after_upgrade, None
                self._feed(rest)
                continue
            if self.conn.draining and not self._collector.in_head:
                return None
            if not self._fill(between_requests=not self._collector.in_head):
                return None  # a head cut short by a close has nothing to answer

    def body(self, counter: Exchange | None = None) -> Iterator[bytes]:
        """The current request's body, piece by piece as it arrives (sends ``100
        Continue`` first when the client waits for it), each counted in
        ``counter.received`` if given. Raises ``ConnectionAbortedError`` when the
        client closes before the end."""
        events = self._events
        while True:
            while events:
                event = events.popleft()
                if type(event) is bytes:
                    if counter is not None:
                        counter.received += len(event)
                    yield event
                else:  # the end of the message: nothing else can come before it
                    return
            if self._continue_due:
                self._continue_due = self.awaiting_continue = False
                self.conn.sock.sendall(CONTINUE)
                self.conn.bytes_sent += len(CONTINUE)
            if not self._fill():
                raise ConnectionAbortedError("the client closed in the middle of a request body")

    def switch_protocols(self) -> bytes:
        """The connection leaves HTTP (an upgrade or a CONNECT was accepted): the bytes
        already read that belong to the new protocol. The reader is not used again."""
        rest, self._after_upgrade = self._after_upgrade or b"", None
        self._collector.parser = None  # the parser and its callbacks hold each other: let go
        return rest

    def skip_continue(self) -> None:
        """The request is refused before its body: no ``100 Continue`` will be sent."""
        self._continue_due = False

    def _admit(self, request: Request) -> Request:
        self._opening = None
        if request.version not in VERSIONS:
            raise HttpError(505, f"HTTP/{request.version} is not served; use HTTP/1.1")
        if request.version == "1.1" and request.hosts != 1:
            raise HttpError(400, "an HTTP/1.1 request needs exactly one Host header")
        if request.content_length is None and not request.chunked:
            request.content_length = 0  # HTTP/1: no length and no chunks, no body
        self._continue_due = self.awaiting_continue = request.expect_continue and request.has_body
        return request

    def _fill(self, between_requests: bool = False) -> bool:
        """One ``recv``, fed to the parser; ``False`` when the client has closed."""
        conn = self.conn
        conn.between_requests = between_requests
        try:
            if self._head_deadline is None:
                data = conn.sock.recv(RECV_SIZE)
            else:
                data = self._recv_before_deadline(self._head_deadline)
        finally:
            conn.between_requests = False
        if not data:
            return False
        conn.bytes_received += len(data)
        if self.h2 and self._opening == b"" and data.startswith(b"PRI"):
            raise PrefaceSeen(data)  # the connection's first bytes: HTTP/2, prior knowledge
        self._feed(data)
        return True

    def _recv_before_deadline(self, deadline: float) -> bytes:
        remaining = deadline - monotonic()
        if remaining > 0:
            with gevent.Timeout(remaining, False):  # type: ignore[arg-type]  # False: no raise
                return self.conn.sock.recv(RECV_SIZE)
        raise HttpError(408, f"request head not complete within {self.head_timeout:g} s")

    def _feed(self, data: bytes) -> None:
        collector = self._collector
        collector.begin_read(data)
        heads = collector.heads
        try:
            self._parser.feed_data(data)
            if collector.in_head:
                collector.end_read()
            else:  # a read that holds no unfinished head is let go: an idle connection
                collector.data = b""  # keeps no buffer
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            request = next(e for e in reversed(self._events) if type(e) is Request)
            if request.has_body and request.method != b"CONNECT":
                self._read_upgrade_body(request, rest)
                return
            # llhttp stops after an Upgrade request: what follows is kept until
            # the handler says whether it switches (switch_protocols) or answers
            # in HTTP/1.1, when it is parsed as the next request.
            self._after_upgrade = rest
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HttpError):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserError as exc:
            if data.startswith(b"PRI * HTTP/2.0"):  # the preface of HTTP/2 with prior knowledge
                raise HttpError(505, "HTTP/2 is not served here (--http1-only)") from None
            raise HttpError(400, f"bad request: {exc}") from None
        if collector.heads != heads:  # a head still arriving is a new one: its own time
            self._head_deadline = None
        if collector.in_head:  # part of a head: bounded in size and in time
            if self._opening is not None:
                self._refuse_http_09(data)
            # What the head holds so far: exactly, from where it began, when that is
            # known; else the reads it spans, and the bound is passed by one read (one
            # read may hold the end of the request before).
            partial = collector.partial
            self._pending_head = (
                len(partial) if partial is not None else self._pending_head + len(data)
            )
            if self._pending_head > self.max_head + RECV_SIZE:
                raise HttpError(431, f"request head over {self.max_head} bytes")
            if self._head_deadline is None:
                self._head_deadline = monotonic() + self.head_timeout
        else:
            self._pending_head = 0
            self._head_deadline = None

    def _read_upgrade_body(self, request: Request, rest: bytes) -> None:
        """llhttp takes every byte after an Upgrade request's head for the new protocol,
        its body too. The body is HTTP/1.1's (a switch happens once the request is whole,
        RFC 9110 7.8): a fresh parser reads it after a made-up head that frames it the
        same way, and goes on with the requests that follow, if the switch is declined."""
        if self._events and self._events[-1] is END:
            self._events.pop()  # llhttp's end of a message whose body it did not read
        framing = b"Transfer-Encoding: chunked" if request.chunked else (
            b"Content-Length: %d" % (request.content_length or 0)
        )  # fmt: skip
        self._parser = httptools.HttpRequestParser(self._collector)
        self._collector.parser = self._parser
        self._collector.resume_body(request)
        self._feed(b"POST / HTTP/1.1\r\nHost: body\r\n%s\r\n\r\n%s" % (framing, rest))

    def _refuse_http_09(self, data: bytes) -> None:
        """505 for an HTTP/0.9 request: a request line without a version, which llhttp
        would take as the start of a head and wait for its end (the header timeout)."""
        self._opening = opening = (self._opening or b"") + data
        line, newline, _ = opening.lstrip(b"\r\n").partition(b"\n")
        if newline and not line.rstrip(b"\r").rpartition(b" ")[2].startswith(b"HTTP/"):
            raise HttpError(505, "HTTP/0.9 is not served; use HTTP/1.1")
