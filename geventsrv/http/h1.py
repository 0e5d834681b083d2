"""HTTP/1.1's front: a connection's requests, each answered through an exchange, framed here.

:func:`serve` is the blocking-style loop the project teaches: take the next
request from the reader (:mod:`geventsrv.http.h1read`: ``recv()``, fed to
llhttp), hand it to the application as an :class:`H1Exchange`, and loop while
the connection is kept alive. Everything HTTP/1.1 decides about an answer is
decided here, once, for whatever the application sends:

* framing: ``Content-Length`` when the body's size is known, chunks when it is
  not (with trailers, when the application ends with some), and for HTTP/1.0,
  which has no chunks, a body that ends with the connection;
* keep-alive: ``Connection: close`` when the client, the application or a
  stopping server ends the connection, ``Connection: keep-alive`` when an
  HTTP/1.0 client keeps it;
* ``HEAD`` and bodiless statuses (1xx, 204, 304): the head only;
* the head goes out with the first piece of the body, in one ``sendall``;
* refusals: a status, a one-line text and ``Connection: close``, then a
  lingering close, so that the refusal is read before any reset;
* tunnels: ``101`` for an upgrade, ``2xx`` for a CONNECT, after which the
  connection is the tunnel's byte stream;
* HTTP/2 in clear (h2c): a connection that opens with HTTP/2's preface is
  handed to the HTTP/2 front whole; a request that asks to ``Upgrade: h2c``
  (with a valid ``HTTP2-Settings``) is answered ``101`` and on HTTP/2's stream 1,
  once its body is read, when it has no body or a length within
  ``--http-max-body``: the body must be read whole before the switch (RFC 7540
  3.2), so it is held, and bounded as a reflected body is; a chunked or larger
  body, or an upgrade over TLS, is answered in HTTP/1.1, as the RFC allows.

Every write is counted in ``conn.bytes_sent``, every read in ``bytes_received``.
"""

from __future__ import annotations

import base64
import binascii
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from geventsrv.connection import linger
from geventsrv.http.exchange import Exchange, Header, HttpError, Request, bodiless, http_date
from geventsrv.http.h1read import MAX_HEAD, PrefaceSeen, RequestReader

if TYPE_CHECKING:
    from geventsrv.connection import Connection

#: The application: answers one exchange (see :mod:`geventsrv.http.exchange`).
Application = Callable[[Exchange], None]
#: Called once per exchange when it is over: (exchange, seconds it took).
Finished = Callable[[Exchange, float], None]
#: Goes on in HTTP/2: (bytes read already, and after an accepted ``Upgrade: h2c``,
#: the request, its body and the client's settings).
SwitchToH2 = Callable[[bytes, "tuple[Request, bytes, bytes] | None"], None]

#: How the body of a response under way is framed.
LENGTH, CHUNKED, UNTIL_CLOSE, NO_BODY = range(4)
SERVER_LINE = b"Server: geventsrv\r\n"


def serve(
    conn: Connection,
    application: Application,
    finished: Finished,
    head_timeout: float,
    max_head: int = MAX_HEAD,
    h2: SwitchToH2 | None = None,
    max_upgrade_body: int = 0,
    announce: bytes = b"",
) -> None:
    """Answer the requests of ``conn`` until the client or the server ends the connection.

    ``finished`` counts each exchange (metrics, access log), refused ones too.
    ``h2``, if given, takes the connection over when the client speaks HTTP/2
    (see the module's h2c); ``max_upgrade_body``, the largest body an upgrade
    may bring. ``announce``: header lines every response carries (``Alt-Svc``, over TLS
    when HTTP/3 is served). Returns normally when the client has closed, or after a response
    that ends the connection; lets ``OSError`` propagate.
    """
    reader = RequestReader(conn, head_timeout, max_head, h2=h2 is not None)
    reader.announce = announce
    number = 0
    while True:
        exchange: H1Exchange | None = None
        started = 0.0
        try:
            request = reader.next_request()
            if request is None:
                return
            number += 1
            started = time.monotonic()
            if h2 is not None and request.upgrade == b"h2c" and number == 1:
                upgrade = h2c_upgrade(conn, reader, request, max_upgrade_body)
                if upgrade is not None:
                    return h2(*upgrade)
            exchange = H1Exchange(conn, reader, request, number)
            application(exchange)
            exchange.end()  # where the application left the response open
        except PrefaceSeen as preface:
            assert h2 is not None
            return h2(preface.data, None)
        except HttpError as exc:
            if exchange is not None and exchange.started:  # the response under way is cut
                finished(exchange, time.monotonic() - started)
                return
            if exchange is not None:
                exchange.status = exc.status
                finished(exchange, time.monotonic() - started)
            refuse(conn, exc.status, exc.reason, exc.headers)
            return
        finished(exchange, time.monotonic() - started)
        if exchange.tunnelled or not exchange.keep:
            return


def h2c_upgrade(
    conn: Connection, reader: RequestReader, request: Request, most: int
) -> tuple[bytes, tuple[Request, bytes, bytes]] | None:
    """Take an ``Upgrade: h2c`` (RFC 7540 3.2): read the body, answer ``101``; the bytes
    read past the request and what stream 1 needs. None: answer in HTTP/1.1 instead."""
    if conn.tls is not None or request.chunked or (request.content_length or 0) > most:
        return None
    settings = [value for name, value in request.headers if name.lower() == b"http2-settings"]
    tokens = {
        token.strip().lower()
        for name, value in request.headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    if len(settings) != 1 or not {b"upgrade", b"http2-settings"} <= tokens:
        return None
    try:
        payload = base64.urlsafe_b64decode(settings[0] + b"=" * (-len(settings[0]) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(payload) % 6:
        return None
    body = b"".join(reader.body())
    answer = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    conn.sock.sendall(answer)
    conn.bytes_sent += len(answer)
    request.version = "2"
    return reader.switch_protocols(), (request, body, payload)


class H1Exchange(Exchange):
    """An HTTP/1.1 request and its response: the framing decided at :meth:`respond`."""

    __slots__ = ("_framing", "_head", "_reader", "keep")

    def __init__(self, conn: Connection, reader: RequestReader, request: Request, number: int):
        super().__init__(conn, request, number)
        self._reader = reader
        #: Whether the connection goes on after this response (decided at ``respond``).
        self.keep = True
        self._framing = LENGTH
        #: The response's head, held until the first piece of its body (or its end).
        self._head: bytes | None = None

    def body(self) -> Iterator[bytes]:
        return self._reader.body(self)  # counts what it hands out in self.received

    def refuse_body(self) -> None:
        self._reader.skip_continue()

    def respond(
        self, status: int, headers: list[Header], length: int | None = None, date: bool = True
    ) -> None:
        request = self.request
        self.status = status
        keep = (
            request.keep_alive
            and not self.close
            and not self.conn.draining
            and not self._reader.awaiting_continue  # its body may follow, or may not
        )
        lines = [status_line(status)]
        lines += [_header_lines.get(header) or header_line(header) for header in headers]
        if request.method == b"HEAD" or bodiless(status):
            self._framing = NO_BODY
            if length is not None and not bodiless(status):  # what a GET would be sent
                lines.append(b"Content-Length: %d\r\n" % length)
        elif length is not None:
            self._framing = LENGTH
            lines.append(b"Content-Length: %d\r\n" % length)
        elif request.version == "1.1":
            self._framing = CHUNKED
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:  # HTTP/1.0 has no chunks: the body ends with the connection
            self._framing = UNTIL_CLOSE
            keep = False
        if date:
            lines.append(_date_line[1] if _date_line[0] is http_date() else date_line())
        if self._reader.announce:
            lines.append(self._reader.announce)
        if not keep:
            lines.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.keep = keep
        self._head = b"".join(lines)

    def send(self, data: bytes | memoryview) -> None:
        framing = self._framing
        if framing == NO_BODY or not data:
            return
        if framing == CHUNKED:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self._write(data)

    def send_piece(self, parts: Iterable[bytes | memoryview], size: int) -> None:
        if self._framing != CHUNKED:
            return super().send_piece(parts, size)
        self._framing = LENGTH  # the chunk's own bytes, then its end, unframed
        try:
            self.send(b"%x\r\n" % size)
            for part in parts:
                self.send(part)
            self.send(b"\r\n")
        finally:
            self._framing = CHUNKED

    def end(self, trailers: list[Header] | None = None) -> None:
        if self._framing == NO_BODY and self._head is None:  # ended already, or no body
            return
        if self.status == 0:  # the application answered nothing
            raise HttpError(500, "the server gave no answer")
        out = self._head or b""
        self._head = None
        if self._framing == CHUNKED:
            out += b"0\r\n%s\r\n" % b"".join(header_line(pair) for pair in trailers or ())
        self._framing = NO_BODY  # ended: nothing more may be sent
        if out:
            self._write(out)

    def answer(
        self, status: int, headers: list[Header], body: bytes | memoryview, date: bool = True
    ) -> None:
        self.respond(status, headers, len(body), date)
        head = self._head
        self._head = None
        assert head is not None
        self._write(head if self._framing == NO_BODY else head + body)
        self._framing = NO_BODY

    def tunnel(self, status: int, headers: list[Header]) -> H1Tunnel:
        self.status = status
        lines = [status_line(status), *(b"%s: %s\r\n" % header for header in headers)]
        self._write(b"".join((*lines, b"\r\n")))
        self.tunnelled = True
        self.keep = False
        self._framing = NO_BODY
        return H1Tunnel(self.conn, self._reader.switch_protocols())

    def _write(self, data: bytes | memoryview) -> None:
        self.conn.sock.sendall(data)
        self.conn.bytes_sent += len(data)


class H1Tunnel:
    """The connection after a ``101`` or a ``2xx`` to CONNECT: its bytes, counted, the
    ones already read past the request first (:class:`~geventsrv.http.exchange.Tunnel`)."""

    __slots__ = ("conn", "first")

    def __init__(self, conn: Connection, first: bytes) -> None:
        self.conn = conn
        self.first = first

    def recv(self, size: int) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        conn = self.conn
        conn.between_requests = True  # a stopping server interrupts this wait (Drained)
        try:
            data = conn.sock.recv(size)
        finally:
            conn.between_requests = False
        conn.bytes_received += len(data)
        return data

    def sendall(self, data: bytes) -> None:
        self.conn.sock.sendall(data)
        self.conn.bytes_sent += len(data)

    def shutdown_write(self) -> None:
        self.conn.sock.shutdown(socket.SHUT_WR)


def refuse(conn: Connection, status: int, why: str, extra: list[Header] | None = None) -> None:
    """Answer ``status`` with a short text, the ``extra`` headers and ``Connection:
    close``, then linger (see :func:`~geventsrv.connection.linger`) and return."""
    payload = f"{why}\n".encode()
    head = b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s%s%s" % (
        len(payload), date_line(), SERVER_LINE, b"Cache-Control: no-store\r\n",
    )  # fmt: skip
    head += b"".join(b"%s: %s\r\n" % header for header in extra or ())
    answer = status_line(status) + head + b"Connection: close\r\n\r\n" + payload
    try:
        conn.sock.sendall(answer)
    except OSError:
        return
    conn.bytes_sent += len(answer)
    conn.bytes_received += linger(conn.sock)


_status_lines: dict[int, bytes] = {}
#: Header lines already formatted: the server's own few, and what controls repeat.
_header_lines: dict[Header, bytes] = {}
HEADER_LINES_KEPT = 256


def header_line(header: Header) -> bytes:
    """``Name: value`` and its CRLF, remembered (forgotten all at once past a bound)."""
    line = b"%s: %s\r\n" % header
    if len(_header_lines) >= HEADER_LINES_KEPT:
        _header_lines.clear()
    _header_lines[header] = line
    return line


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>`` and its CRLF, made once per status."""
    line = _status_lines.get(status)
    if line is None:
        line = _status_lines[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason(status))
    return line


def reason(status: int) -> bytes:
    """The reason phrase of ``status`` (``b""`` for a code without a name)."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


_date_line: tuple[bytes, bytes] = (b"", b"")


def date_line() -> bytes:
    """The ``Date`` header line, made once a second."""
    global _date_line
    value = http_date()
    if _date_line[0] is not value:
        _date_line = (value, b"Date: %s\r\n" % value)
    return _date_line[1]
