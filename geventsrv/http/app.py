"""The http mode's application: what every request gets, whatever its HTTP version.

Every request is answered with one JSON reflection of what arrived
(:mod:`geventsrv.http.reflection` has the schema): put the server behind a
reverse proxy, an ingress or a gateway and read what reached the backend.
Written once, against the version-neutral exchange
(:mod:`geventsrv.http.exchange`): the front of each HTTP version frames what
this module sends.

Besides the reflection: ``/echo`` sends the request's body back byte for byte
as it arrives (never held whole), for uploads through a proxy; ``/sse`` sends
server-sent events, ``count`` of them ``interval`` seconds apart, to see
whether a proxy buffers them; ``/.ws`` is a page to try the WebSocket echo
from a browser; a request that asks for a WebSocket, on any path, gets
the echo (:mod:`geventsrv.http.websocket`); a gRPC call (``content-type:
application/grpc``) gets the gRPC services (:mod:`geventsrv.http.grpc`); and
a CONNECT opens a tunnel whose far end is an echo, to test a forward proxy. Per-request controls
(:mod:`geventsrv.http.controls`) set the status, a delay, generated or
trickled bodies, extra headers.

Bounded, as everything a peer controls: the body held for a reflection
(``--http-max-body``, 413 past it), what is generated, trickled or streamed
(never more than one read or one 64 KiB slice in memory). A request the
server refuses raises :class:`~geventsrv.http.exchange.HttpError`, which the
front answers; never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import os
import re
import socket
import time
from typing import TYPE_CHECKING

import gevent

from geventsrv.connection import RECV_SIZE, Drained
from geventsrv.http import compression, cors, ranges
from geventsrv.http.conditional import precondition, range_still_valid
from geventsrv.http.controls import PLAIN, BadControl, Controls, ControlsJudge, query_pairs
from geventsrv.http.exchange import Exchange, Header, HttpError, bodiless
from geventsrv.http.grpc import GrpcService, is_grpc
from geventsrv.http.htmlview import render, wants_html
from geventsrv.http.httpbin import Httpbin
from geventsrv.http.patterns import PATTERN, generated
from geventsrv.http.reflection import encode
from geventsrv.http.reflector import Answerer
from geventsrv.http.websocket import WebSocketEcho, wants_websocket

if TYPE_CHECKING:
    from geventsrv.config import Config
    from geventsrv.http.exchange import Tunnel

SERVER = (b"Server", b"geventsrv")
NO_STORE = (b"Cache-Control", b"no-store")
JSON = b"application/json"
OCTETS = b"application/octet-stream"
ACCEPT_RANGES = (b"Accept-Ranges", b"bytes")
VARY_CODING = (b"Vary", b"Accept-Encoding")
VARY_ACCEPT = (b"Vary", b"Accept")
HTML = b"text/html; charset=utf-8"
#: A CONNECT's target: host and port (RFC 9110 9.3.6), the host a name or an address.
AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~%!$&'()*+,;=]+):[0-9]{1,5}")
#: Full reads in a row after which a tunnel's relay steps aside (as the TCP echo does).
FULL_READS_BEFORE_YIELD = 4


class HttpApp:
    """The application: called with each exchange, by every version's front."""

    def __init__(self, config: Config) -> None:
        self.answerer = Answerer(socket.gethostname(), config.worker_id, os.getpid())
        self.max_body = config.http_max_body
        self.judge = ControlsJudge(config.http_max_delay)
        self.cors = cors.Policy.parse(config.http_cors)
        self.httpbin = Httpbin(self)
        self.websocket = WebSocketEcho(config.ws_max_message, config.access_log)
        self.grpc = GrpcService(
            self.answerer, self.judge, config.grpc_max_message, config.access_log
        )

    def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        if wants_websocket(request):
            return self._websocket(exchange)
        if is_grpc(request.content_type):
            return self.grpc(exchange)
        if request.method == b"CONNECT":
            return self._connect(exchange)
        path, mark, query = request.target.partition(b"?")
        if path == b"/.ws":
            return self._page(exchange)
        try:
            controls = self.judge(request, query) if mark or request.controls else PLAIN
        except BadControl as exc:
            exchange.refuse_body()
            payload = encode({"error": str(exc)})
            return exchange.answer(400, [(b"Content-Type", JSON), SERVER, NO_STORE], payload)
        if request.method == b"OPTIONS":
            policy = controls.cors or self.cors
            if not policy.off and cors.is_preflight(request):
                return self._preflight(exchange, policy)
        if controls.auth is not None:
            refused = controls.auth.judge(request.field(b"authorization"))
            if refused is not None:
                return self._unauthorized(exchange, controls, refused)
        if controls.delay:
            gevent.sleep(controls.delay)
        if controls.close:
            exchange.close = True
        if path == b"/echo":
            return self._echo(exchange, controls)
        if path == b"/sse":
            return self._events(exchange, controls)
        if path != b"/" and self.httpbin(exchange, controls, path, query):
            return None
        return self._reflect(exchange, controls)

    # -- the reflection and generated bodies -------------------------------------------

    def _reflect(self, exchange: Exchange, controls: Controls) -> None:
        body = self.read_body(exchange)
        if controls.view == "raw":
            return self.dump(exchange, controls, body)
        arrived = None
        if body and (coding := exchange.request.field(b"content-encoding")) is not None:
            arrived = coding.decode("latin-1"), len(body)
            body = self._decoded(body, coding)
        if controls.size is None:
            payload = self.answerer.reflect(exchange, body, arrived)
            view = controls.view
            if view is None and wants_html(exchange.request.accept):
                view = "html"
            if controls.cacheable:  # a cache keeps the page and the JSON apart
                controls = dataclasses.replace(controls, headers=[*controls.headers, VARY_ACCEPT])
            if view == "html":
                page = render(payload)
                return self.send_body(exchange, controls, HTML, page, len(page))
            self.send_body(exchange, controls, JSON, payload, len(payload))
        else:
            self.send_body(exchange, controls, OCTETS, None, controls.size)

    def dump(self, exchange: Exchange, controls: Controls, body: bytes) -> None:
        """The request itself as text: HTTP/1.1's head exactly as it arrived (line endings
        and whitespace included), or HTTP/2's fields as decoded, in order; then the body as
        it was read (de-chunked, not decoded)."""
        request = exchange.request
        head = request.raw_head()
        if head is None and request.pseudo is None:
            raise HttpError(
                501, "the head of a request that followed a chunked body in one read is not kept"
            )
        if head is None:
            fields = [*(request.pseudo or []), *request.headers]
            head = b"".join(b"%s: %s\r\n" % field for field in fields) + b"\r\n"
        payload = head + body
        controls = dataclasses.replace(controls, view=None)
        self.send_body(exchange, controls, b"text/plain; charset=utf-8", payload, len(payload))

    def _decoded(self, body: bytes, coding: bytes) -> bytes:
        """A body that came with ``Content-Encoding``, decoded for the reflection: 413 when
        it decodes past ``--http-max-body`` (a decompression bomb), 400 when it cannot."""
        try:
            return compression.decode(coding, body, self.max_body)
        except compression.TooLarge:
            raise HttpError(
                413, f"body decodes to more than --http-max-body ({self.max_body} bytes)"
            ) from None
        except compression.BadEncoding as exc:
            raise HttpError(400, str(exc)) from None

    def _preflight(self, exchange: Exchange, policy: cors.Policy) -> None:
        """A CORS preflight, answered as the server's (or the request's) policy allows."""
        for _ in exchange.body():
            pass
        headers = [SERVER, NO_STORE, *cors.preflight_headers(policy, exchange.request)]
        exchange.answer(204, headers, b"")

    def _unauthorized(self, exchange: Exchange, controls: Controls, status: int) -> None:
        """401 (with the challenge) or 403 to a request without the credentials it needs."""
        exchange.refuse_body()
        assert controls.auth is not None
        reason = "credentials required" if status == 401 else "wrong credentials"
        headers, date = self.response_head(exchange, controls, JSON)
        if status == 401:
            headers.append((b"WWW-Authenticate", controls.auth.challenge()))
        exchange.answer(status, headers, encode({"error": reason}), date)

    def read_body(self, exchange: Exchange) -> bytes:
        """The whole body, for the reflection; 413 past ``--http-max-body``."""
        declared = exchange.request.content_length
        if declared is not None and declared > self.max_body:
            exchange.refuse_body()  # refused before the client sends it
            raise HttpError(413, f"body larger than --http-max-body ({self.max_body} bytes)")
        parts = []
        size = 0
        for piece in exchange.body():
            size += len(piece)
            if size > self.max_body:
                raise HttpError(413, f"body larger than --http-max-body ({self.max_body} bytes)")
            parts.append(piece)
        return b"".join(parts)

    def response_head(
        self,
        exchange: Exchange,
        controls: Controls,
        content_type: bytes | None,
        trailers: list[Header] | None = None,
    ) -> tuple[list[Header], bool]:
        """:func:`response_headers`, with CORS's for a request that names its origin."""
        headers, date = response_headers(content_type, controls.headers, trailers)
        origin = exchange.request.origin
        if origin is not None:
            policy = controls.cors or self.cors
            if not policy.off:
                headers += cors.simple_headers(policy, origin)
        return headers, date

    def send_body(
        self,
        exchange: Exchange,
        controls: Controls,
        content_type: bytes,
        payload: bytes | memoryview | None,
        size: int,
        pattern: bytes = PATTERN,
    ) -> None:
        """A response whose body is ``payload`` (or ``size`` bytes of ``pattern``), whole or
        trickled in ``controls.chunks`` pieces, ``controls.interval`` apart; answered 304 or
        412 instead where validators were asked for and a precondition says so, compressed
        where asked, and only the ``Range`` asked for of a generated body."""
        status = controls.status
        headers, date = self.response_head(exchange, controls, content_type, controls.trailers)
        request = exchange.request
        if payload is None:
            headers.append(ACCEPT_RANGES)
        if controls is not PLAIN and 200 <= status < 300:
            if controls.etag is not None or controls.last_modified is not None:
                judged = precondition(request, controls.etag, controls.last_modified)
                if judged is not None:
                    return self._not_sent(exchange, judged, headers, date)
            if controls.compress is not None:
                return self._compressed(exchange, controls, headers, date, payload, size, pattern)
            if (
                payload is None
                and request.range is not None
                and not controls.streamed
                and range_still_valid(
                    request.field(b"if-range"), controls.etag, controls.last_modified
                )
            ):
                return self._ranges(exchange, headers, date, size, request.range, pattern)
        if not controls.streamed or bodiless(status):
            if payload is None and size <= len(pattern):  # one slice: no copy, one write
                payload = memoryview(pattern)[:size]
            if payload is not None:
                return exchange.answer(status, headers, payload, date)
            exchange.respond(status, headers, size, date)
            for piece in generated(0, size, pattern):
                exchange.send(piece)
            return exchange.end()
        exchange.respond(status, headers, None, date)  # streamed: sent as it goes
        pieces = max(1, min(controls.chunks, size))
        start = 0
        for index in range(pieces):
            end = size * (index + 1) // pieces
            if index:
                gevent.sleep(controls.interval)
            if payload is not None:
                exchange.send(payload[start:end])
            elif end > start:
                exchange.send_piece(generated(start, end - start, pattern), end - start)
            start = end
        exchange.end(controls.trailers)

    @staticmethod
    def _not_sent(exchange: Exchange, status: int, headers: list[Header], date: bool) -> None:
        """304 (the validators and caching headers, no body) or 412 (why, as JSON)."""
        if status == 304:
            kept = [(name, value) for name, value in headers if name.lower() != b"content-type"]
            return exchange.answer(304, kept, b"", date)
        body = encode({"error": "a precondition failed (If-Match or If-Unmodified-Since)"})
        exchange.answer(412, [(b"Content-Type", JSON), SERVER, NO_STORE], body)

    @staticmethod
    def _compressed(
        exchange: Exchange,
        controls: Controls,
        headers: list[Header],
        date: bool,
        payload: bytes | memoryview | None,
        size: int,
        pattern: bytes,
    ) -> None:
        """The body compressed: with the coding asked for, or the best the client accepts
        (and ``Vary: Accept-Encoding`` then, since the answer depends on it)."""
        coding = controls.compress
        if coding == "auto":
            headers.append(VARY_CODING)
            coding = compression.negotiate(exchange.request.field(b"accept-encoding"))
        headers = [header for header in headers if header is not ACCEPT_RANGES]
        if coding is None:  # the client accepts none: sent as it is
            pieces = [payload] if payload is not None else list(generated(0, size, pattern))
            exchange.respond(controls.status, headers, size, date)
            for piece in pieces:
                exchange.send(piece)
            return exchange.end()
        headers.append((b"Content-Encoding", coding.encode()))
        if payload is not None:
            return exchange.answer(
                controls.status, headers, compression.compress(coding, payload), date
            )
        engine = compression.compressor(coding)
        exchange.respond(controls.status, headers, None, date)
        for piece in generated(0, size, pattern):
            if out := engine.compress(bytes(piece)):
                exchange.send(out)
        exchange.send(engine.flush())
        exchange.end()

    @staticmethod
    def _ranges(
        exchange: Exchange,
        headers: list[Header],
        date: bool,
        size: int,
        asked: bytes,
        pattern: bytes,
    ) -> None:
        """A generated body's ranges: 206 with one range, ``multipart/byteranges`` with
        several, 416 with none inside the body; the whole body when ``Range`` is to be
        ignored."""
        try:
            spans = ranges.parse_ranges(asked, size)
        except ranges.Unsatisfiable:
            kept = [header for header in headers if header[0] != b"Content-Type"]
            kept += [(b"Content-Range", ranges.unsatisfied_range(size)), (b"Content-Type", JSON)]
            body = encode({"error": f"no range inside the body's {size} bytes"})
            return exchange.answer(416, kept, body, date)
        if spans is None:
            exchange.respond(200, headers, size, date)
            for piece in generated(0, size, pattern):
                exchange.send(piece)
            return exchange.end()
        if len(spans) == 1:
            first, last = spans[0]
            headers.append((b"Content-Range", ranges.content_range(spans[0], size)))
            exchange.respond(206, headers, last - first + 1, date)
            for piece in generated(first, last - first + 1, pattern):
                exchange.send(piece)
            return exchange.end()
        parts = ranges.Multipart(spans, size, OCTETS)
        headers = [
            (name, parts.content_type if name == b"Content-Type" else value)
            for name, value in headers
        ]
        exchange.respond(206, headers, parts.length, date)
        for head, (first, last) in zip(parts.heads, spans, strict=True):
            exchange.send(head)
            for piece in generated(first, last - first + 1, pattern):
                exchange.send(piece)
        exchange.send(parts.closing)
        exchange.end()

    # -- the other paths -------------------------------------------------------------

    def _echo(self, exchange: Exchange, controls: Controls) -> None:
        """The request's body back as it arrives, with its length if it came with one: one
        read in memory."""
        request = exchange.request
        pieces = exchange.body()
        first = next(pieces, b"")  # sends 100 Continue when the client waits for it
        headers, date = self.response_head(
            exchange, controls, request.content_type or OCTETS, controls.trailers
        )
        length = None if controls.trailers else request.content_length
        exchange.respond(controls.status, headers, length, date)
        exchange.send(first)
        for piece in pieces:
            exchange.send(piece)
        exchange.end(controls.trailers)

    def _events(self, exchange: Exchange, controls: Controls) -> None:
        """Server-sent events: ``count`` of them, ``interval`` apart, from ``Last-Event-ID`` + 1."""
        for _ in exchange.body():
            pass
        request = exchange.request
        first = 1
        if request.last_event_id is not None and request.last_event_id.isdigit():
            first = int(request.last_event_id) + 1
        if first > controls.count:  # a reconnecting EventSource: 204 tells it to stop
            return exchange.answer(204, [SERVER, NO_STORE], b"")
        status = controls.status
        headers, date = self.response_head(
            exchange, controls, b"text/event-stream", controls.trailers
        )
        exchange.respond(status, headers, None, date)
        if request.method == b"HEAD" or bodiless(status):
            return exchange.end()
        for number in range(first, controls.count + 1):
            if number > first:
                gevent.sleep(controls.interval)
                if exchange.draining:  # the stream ends early, properly; the connection closes
                    break
            data = json.dumps({"n": number, "count": controls.count, "time": round(time.time(), 6)})
            exchange.send(b"id: %d\ndata: %s\n\n" % (number, data.encode()))
        exchange.end(controls.trailers)

    def _page(self, exchange: Exchange) -> None:
        """``/.ws``: the page a person opens to try the WebSocket echo from a browser."""
        for _ in exchange.body():
            pass
        headers = [(b"Content-Type", b"text/html; charset=utf-8"), SERVER, NO_STORE]
        exchange.answer(200, headers, ws_page())

    def _websocket(self, exchange: Exchange) -> None:
        """The WebSocket echo, after its handshake (:class:`HttpError` if it cannot be)."""
        headers, extensions = self.websocket.handshake(exchange.request)
        if exchange.request.protocol is None:  # HTTP/1.1's GET: only its end
            for _ in exchange.body():  # (HTTP/2's CONNECT stream is the WebSocket's)
                pass
        query = exchange.request.target.partition(b"?")[2]
        reflect = any(
            name == "reflect" and value.lower() in ("1", "true", "yes")
            for name, value in query_pairs(query)
        )
        first = self.answerer.reflect(exchange, b"") if reflect else None
        self.websocket.serve(exchange, headers, extensions, first)

    def _connect(self, exchange: Exchange) -> None:
        """CONNECT: a tunnel whose far end is an echo (never the host it names), or the
        status ``X-Echo-Status`` asks for, with the reflection."""
        request = exchange.request
        if request.protocol is not None:  # an extended CONNECT (RFC 8441) for another protocol
            shown = request.protocol.decode("latin-1")[:50]
            raise HttpError(501, f"extended CONNECT serves websocket, not {shown!r}")
        if not AUTHORITY.fullmatch(request.target):
            raise HttpError(400, "CONNECT takes host:port")
        try:
            controls = self.judge(request, b"") if request.controls else PLAIN
        except BadControl as exc:
            raise HttpError(400, str(exc)) from None
        if controls.delay:
            gevent.sleep(controls.delay)
        if not 200 <= controls.status < 300:  # the tunnel refused, as a proxy would
            exchange.close = controls.close
            payload = self.answerer.reflect(exchange, b"")
            headers, date = response_headers(JSON, controls.headers)
            return exchange.answer(controls.status, headers, payload, date)
        relay(exchange.tunnel(controls.status, [SERVER]))


def response_headers(
    content_type: bytes | None, extra: list[Header], trailers: list[Header] | None = None
) -> tuple[list[Header], bool]:
    """A response's headers: ``Content-Type``, ``Server``, ``Cache-Control``, and the
    ``extra`` ones asked for, which replace the server's of the same name (``Trailer``
    names the ``trailers`` to come); and whether the front adds ``Date`` (unless one was
    asked for)."""
    headers = [(b"Content-Type", content_type), SERVER, NO_STORE] if content_type else [
        SERVER, NO_STORE
    ]  # fmt: skip
    if trailers:
        headers.append((b"Trailer", b", ".join(dict.fromkeys(name for name, _ in trailers))))
    if not extra:
        return headers, True
    replaced = {name.lower() for name, _ in extra}
    headers = [header for header in headers if header[0].lower() not in replaced]
    return headers + extra, b"date" not in replaced


def relay(tunnel: Tunnel) -> None:
    """Echo a tunnel's bytes until the client ends its side or the server stops; then end
    this side too."""
    full_reads = 0
    try:
        while data := tunnel.recv(RECV_SIZE):
            tunnel.sendall(data)
            full_reads = full_reads + 1 if len(data) == RECV_SIZE else 0
            if full_reads == FULL_READS_BEFORE_YIELD:  # a bulk sender lets the others run
                full_reads = 0
                gevent.sleep(1e-6)
    except Drained:
        pass
    tunnel.shutdown_write()


@functools.cache
def ws_page() -> bytes:
    """The ``/.ws`` page (``wspage.html`` beside this module), read once."""
    return (importlib.resources.files("geventsrv.http") / "wspage.html").read_bytes()
