"""The version-neutral exchange: one request and its response, whatever the HTTP version.

A front (:mod:`geventsrv.http.h1`, one per HTTP version) reads requests off its
wire and hands each to the application (:mod:`geventsrv.http.app`) as an
:class:`Exchange`: the request's head (:class:`Request`), its body piece by
piece (:meth:`Exchange.body`), and the calls that answer it:
:meth:`~Exchange.respond` (status and headers), :meth:`~Exchange.send` (body
bytes), :meth:`~Exchange.end` (trailers, and the end), or :meth:`~Exchange.answer`
for a whole body at once; or :meth:`~Exchange.tunnel`, which leaves HTTP for a
byte stream of the exchange's own (a WebSocket, a CONNECT).

The application writes no framing: ``Content-Length`` or chunks, keep-alive,
``HEAD`` and bodiless statuses are the front's, and so is ``Date``. Each call
returns once its bytes are handed on, parking only the calling greenlet.

Contract for the application
    Raise :class:`HttpError` to refuse a request before its response began:
    the front answers it as its version answers refusals. Let ``OSError``
    propagate. Set :attr:`Exchange.close` to end the connection after this
    response. Read the body, or leave it: the front reads and drops what is
    left, or closes where it cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from email.utils import formatdate
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from geventsrv.connection import Connection

#: A header as the application gives it and the reflection shows it: name, value.
Header = tuple[bytes, bytes]


class HttpError(Exception):
    """A request the server refuses: the ``status`` to answer, a one-line ``reason``, and
    headers the refusal must carry (``Sec-WebSocket-Version`` with a 426, say)."""

    def __init__(self, status: int, reason: str, headers: list[Header] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


#: The fields a request's head is read for, each to its branch in :class:`Request`.
NOTED = {
    name: index
    for index, name in enumerate((
        b"host", b"content-length", b"content-type", b"transfer-encoding", b"expect",
        b"last-event-id", b"upgrade", b"accept", b"origin", b"range",
    ))
}  # fmt: skip


class Request:
    """One request's head, as it arrived: bytes throughout, headers in order and case.

    ``version`` is ``"1.0"``, ``"1.1"`` or ``"2"``. ``headers`` are the fields as
    they came (HTTP/2's arrive lower-case, and are shown so); ``pseudo``, HTTP/2's
    pseudo-headers in their order (``None`` in HTTP/1).
    """

    __slots__ = (
        "accept", "chunked", "content_length", "content_type", "controls", "expect_continue",
        "headers", "hosts", "keep_alive", "last_event_id", "method", "origin", "protocol",
        "pseudo", "range", "raw", "stream_id", "target", "too_large", "trailers", "upgrade",
        "version",
    )  # fmt: skip

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: list[Header],
        keep_alive: bool = True,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        #: Whether the client keeps the connection (HTTP/1: from the version and
        #: ``Connection``).
        self.keep_alive = keep_alive
        self.pseudo: list[Header] | None = None
        #: The stream (HTTP/2), ``None`` in HTTP/1.
        self.stream_id: int | None = None
        #: HTTP/2's ``:protocol`` (an extended CONNECT, RFC 8441).
        self.protocol: bytes | None = None
        #: The request's trailers, once its body has ended with some.
        self.trailers: list[Header] = []
        #: Its head is past the bound (HTTP/2: answered 431).
        self.too_large = False
        self.content_length: int | None = None
        self.content_type: bytes | None = None
        self.chunked = False
        self.expect_continue = False
        self.hosts = 0
        self.last_event_id: bytes | None = None
        #: The ``Upgrade`` header, lower-cased (``b"websocket"``, ``b"h2c"``).
        self.upgrade: bytes | None = None
        #: ``Accept`` (a browser's asks for the page), ``Origin`` (CORS) and ``Range``, the
        #: last of each.
        self.accept: bytes | None = None
        self.origin: bytes | None = None
        self.range: bytes | None = None
        #: ``X-Echo-*`` headers: (name after the prefix, lower-cased; value).
        self.controls: list[tuple[str, bytes]] = []
        #: Where the head lies in what was read, as HTTP/1.1's reader found it: (bytes,
        #: where it begins, empty lines aside); ``None`` in HTTP/2 (its heads arrive
        #: compressed) or where it is not known (see :mod:`geventsrv.http.h1read`).
        self.raw: tuple[bytes, int] | None = None
        for name, value in headers:  # one pass, for what the server acts on
            lower = name.lower()
            noted = NOTED.get(lower)  # one look-up, rather than a compare per field it is not
            if noted is None:
                if lower.startswith(b"x-echo-"):
                    self.controls.append((lower[7:].decode("latin-1"), value))
            elif noted == 0:
                self.hosts += 1
            elif noted == 1:
                self.content_length = int(value)  # the front has checked it is a number
            elif noted == 2:
                self.content_type = value
            elif noted == 3:
                self.chunked = True  # llhttp refuses any coding that does not end in chunked
            elif noted == 4:
                self.expect_continue = value.lower() == b"100-continue"
            elif noted == 5:
                self.last_event_id = value
            elif noted == 6:
                self.upgrade = value.lower()
            elif noted == 7:
                self.accept = value
            elif noted == 8:
                self.origin = value
            else:
                self.range = value

    def copy(self) -> Request:
        """Another request with this one's head (its fields shared, never changed), and
        trailers of its own: HTTP/2 makes one per stream of a block it has judged before."""
        other = Request.__new__(Request)
        other.method, other.target, other.version = self.method, self.target, self.version
        other.headers, other.keep_alive, other.pseudo = self.headers, self.keep_alive, self.pseudo
        other.stream_id, other.protocol, other.trailers = self.stream_id, self.protocol, []
        other.too_large, other.content_length = self.too_large, self.content_length
        other.content_type, other.chunked = self.content_type, self.chunked
        other.expect_continue, other.hosts = self.expect_continue, self.hosts
        other.last_event_id, other.upgrade = self.last_event_id, self.upgrade
        other.accept, other.origin, other.range = self.accept, self.origin, self.range
        other.controls, other.raw = self.controls, self.raw
        return other

    def raw_head(self) -> bytes | None:
        """The head exactly as it arrived (request line, headers, the empty line), or
        ``None`` where it is not kept."""
        if self.raw is None:
            return None
        data, start = self.raw
        start = skip_line_ends(data, start)
        end = data.find(b"\r\n\r\n", start) + 4  # a head ends at its first empty line
        return data[start:end]

    def field(self, name: bytes) -> bytes | None:
        """The header ``name`` (lower-case), its lines joined by ``", "`` as a list-valued
        field's are (RFC 9110 5.3); ``None`` when it did not come. A scan: for the headers
        only some responses look at (conditionals, credentials, cookies)."""
        found = [value for key, value in self.headers if key.lower() == name]
        if not found:
            return None
        return found[0] if len(found) == 1 else b", ".join(found)

    @property
    def has_body(self) -> bool:
        """Whether a body may follow the head (a length above 0, or chunks)."""
        return self.chunked or bool(self.content_length)


class Tunnel(Protocol):
    """The byte stream an exchange becomes once it leaves HTTP (:meth:`Exchange.tunnel`).

    HTTP/1.1: the connection itself, after ``101`` or a ``2xx`` to CONNECT.
    """

    def recv(self, size: int, /) -> bytes:
        """What the client sent next, at most ``size`` bytes; ``b""`` once it has ended
        its side. Raises :class:`~geventsrv.connection.Drained` when the server stops
        while it waits."""

    def sendall(self, data: bytes, /) -> None:
        """Send ``data`` to the client."""

    def shutdown_write(self) -> None:
        """Nothing more will be sent from this side."""


class Exchange:
    """One request and its response, as a front hands it to the application.

    The base class keeps what every version shares; each front implements the
    rest (see the module's contract).
    """

    __slots__ = ("close", "conn", "number", "received", "request", "status", "tunnelled")

    def __init__(self, conn: Connection, request: Request, number: int) -> None:
        self.conn = conn
        self.request = request
        #: The request's place on its connection, from 1.
        self.number = number
        #: The status sent; 0 until :meth:`respond`.
        self.status = 0
        #: Body bytes read so far.
        self.received = 0
        #: Set by the application: end the connection after this response.
        self.close = False
        #: Whether :meth:`tunnel` took the exchange out of HTTP.
        self.tunnelled = False

    @property
    def started(self) -> bool:
        """Whether the response has begun: a refusal can no longer be answered."""
        return self.status != 0

    @property
    def draining(self) -> bool:
        """Whether the server is stopping: a long response should end early, properly."""
        return self.conn.draining

    def body(self) -> Iterator[bytes]:
        """The request's body, piece by piece as it arrives; each piece counts in
        :attr:`received`. Raises ``ConnectionAbortedError`` if the client gives up in
        the middle of it."""
        raise NotImplementedError

    def refuse_body(self) -> None:
        """The body will not be read: a client waiting for ``100 Continue`` gets none."""

    def respond(
        self, status: int, headers: list[Header], length: int | None = None, date: bool = True
    ) -> None:
        """Begin the response: ``status`` and ``headers`` (no framing headers); ``length``,
        the body's size when it is known (else the body is streamed). ``date``: add the
        ``Date`` header (the application gives its own instead)."""
        raise NotImplementedError

    def send(self, data: bytes | memoryview) -> None:
        """Body bytes (dropped where the response has no body: HEAD, 204, 304)."""
        raise NotImplementedError

    def send_piece(self, parts: Iterable[bytes | memoryview], size: int) -> None:
        """One piece of the body, ``size`` bytes, from several buffers (one chunk in
        HTTP/1.1), so that a large piece is never joined in memory."""
        for part in parts:
            self.send(part)

    def end(self, trailers: list[Header] | None = None) -> None:
        """End the response, with ``trailers`` if given (chunked framing in HTTP/1.1)."""
        raise NotImplementedError

    def answer(
        self, status: int, headers: list[Header], body: bytes | memoryview, date: bool = True
    ) -> None:
        """A whole response at once (as few writes as the version allows)."""
        self.respond(status, headers, len(body), date)
        self.send(body)
        self.end()

    def refuse(self, error: HttpError) -> None:
        """Answer a refusal with its status and a one-line text, as a whole response (the
        multiplexed versions; HTTP/1.1 refuses on the connection, ``h1.refuse``)."""
        payload = f"{error.reason}\n".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"server", b"geventsrv"),
                   (b"cache-control", b"no-store"), *error.headers]  # fmt: skip
        self.answer(error.status, headers, payload)

    def tunnel(self, status: int, headers: list[Header]) -> Tunnel:
        """Answer ``status`` (101, or 2xx to a CONNECT) and leave HTTP: what follows is the
        returned byte stream's, until either side ends it."""
        raise NotImplementedError


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header's value now (RFC 9110 5.6.7), formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


def skip_line_ends(data: bytes, position: int) -> int:
    """The first position from ``position`` that is not CR or LF (empty lines may come
    between HTTP/1.1's messages)."""
    while position < len(data) and data[position] in (13, 10):
        position += 1
    return position


def bodiless(status: int) -> bool:
    """Whether a response with ``status`` never has a body (RFC 9110 6.4.1, 15.2)."""
    return status in (204, 304) or status < 200
