"""``--mode http``: every HTTP/1.1 request is answered with one JSON reflection of what arrived.

For testing what sits in front of a server at layer 7: a reverse proxy, an
ingress, a gateway. The reflection says what the server received, and every
source of the client's address side by side, none trusted silently: the
socket's peer, the PROXY header, ``X-Forwarded-For``, ``Forwarded`` (RFC 7239)
and ``X-Real-IP``.

The handler is the blocking-style loop the project teaches: ``recv()`` what
the socket has, feed it to h11 (a sans-IO HTTP/1.1 parser: it never touches
the socket), act on the events it gives, ``sendall()`` the answer. Keep-alive,
pipelining, chunked request bodies, ``Expect: 100-continue``, HEAD and
``Connection: close`` are h11's, as RFC 9112 says.

Bounded, as everything a peer controls: the request head is at most
:data:`MAX_HEAD` bytes (431 past it); the body held for the reflection at most
``--http-max-body`` (413 past it); a delay asked for at most
``--http-max-delay``. A malformed request gets 400 and a close. Nothing from
the server's environment or file system is ever reflected.

Per-request controls, as query parameters (``?status=503``) or as headers
(``X-Echo-Status: 503``): ``status`` (the response's status code, 200-599),
``delay`` (seconds to wait before answering), ``close`` (close the connection
after the response).

The schema, version ``geventsrv.http/1`` (every key always present; ``null``
where it does not apply): ``schema``; ``request`` {``number`` (on this
connection, from 1), ``method``, ``target`` (raw), ``path``, ``query`` (name
-> list of values), ``http_version``, ``headers`` ([name, value] pairs in their
order and case, duplicates kept)}; ``body`` {``size``, ``text`` (when UTF-8)
or ``base64``, ``json`` (when it parses as JSON)}; ``client`` {``peer``,
``proxy`` (the PROXY header's source), ``x_forwarded_for`` (list),
``forwarded`` (list of {for, by, proto, host}), ``x_real_ip``}; ``proxy`` (the
PROXY header, as the info mode shows it); ``tls``; ``server`` {``host``,
``worker``, ``pid``, ``local``, ``connection``}.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import gevent
import h11

from geventsrv.addresses import format_address
from geventsrv.connection import RECV_SIZE, Connection
from geventsrv.modes.info import describe_proxy
from geventsrv.stats import Durations

if TYPE_CHECKING:
    from geventsrv.config import Config

SCHEMA = "geventsrv.http/1"
#: Largest request head (request line and headers) accepted; past it, 431.
MAX_HEAD = 16 * 1024
#: Header that asks for a control, as ``X-Echo-<NAME>`` (the query parameter wins).
CONTROL_PREFIX = "x-echo-"
SERVER_NAME = b"geventsrv"
#: Methods counted by name in the metrics; any other is "other" (a client could
#: otherwise make a label of every string it sends).
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
)
#: Upper bounds (seconds) of the request-duration buckets.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: One line per request with ``--access-log`` (the server writes none per connection).
access_log = logging.getLogger("geventsrv.access")
#: After refusing a request, how long and how much of the rest the server reads
#: (and drops) before it closes: closing with unread bytes would send the client
#: an RST that can destroy the refusal before it is read (nginx's lingering close).
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


class BadControl(ValueError):
    """A control's value cannot be used; ``str()`` says why (answered with 400)."""


class HttpReflector:
    """The http mode's handler: one h11 connection per client, one reflection per request."""

    def __init__(self, config: Config) -> None:
        self.worker = config.worker_id
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.max_body = config.http_max_body
        self.max_delay = config.http_max_delay
        self.access_log = config.access_log
        #: Requests answered, by (method, status class): what /metrics shows.
        self.requests: dict[tuple[str, str], int] = {}
        self.durations = Durations(REQUEST_BUCKETS, [0] * (len(REQUEST_BUCKETS) + 1))

    def __call__(self, conn: Connection) -> None:
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        number = 0
        while True:
            try:
                event = self._next_event(http, conn, between_requests=True)
                if event is None:  # the server is stopping, and no request was under way
                    return
                if isinstance(event, h11.Request):
                    number += 1
                    if head_size(event) > MAX_HEAD:  # it came whole, in one read
                        self._refuse(http, conn, 431, f"request head over {MAX_HEAD} bytes")
                        self.record(conn, event, 431, 0, 0.0)
                        return
                    self._answer(http, conn, event, number)
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            except h11.RemoteProtocolError as exc:
                self._refuse(http, conn, exc.error_status_hint, f"bad request: {str(exc)[:200]}")
                return
            if http.our_state is h11.MUST_CLOSE or http.their_state is h11.MUST_CLOSE:
                return
            if http.our_state is h11.DONE and http.their_state is h11.DONE:
                http.start_next_cycle()

    # -- reading -------------------------------------------------------------------

    def _next_event(
        self, http: h11.Connection, conn: Connection, between_requests: bool = False
    ) -> Any:
        """The next event, reading from the socket while h11 needs more bytes.

        With ``between_requests`` (waiting for a new request), the first wait
        is marked on ``conn`` so that a stopping server may close it there
        (:class:`~geventsrv.connection.Drained`); ``None`` if it is stopping already.
        """
        while True:
            event = http.next_event()
            if event is not h11.NEED_DATA:
                return event
            if http.they_are_waiting_for_100_continue:
                self._send(
                    conn,
                    http,
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"),
                )
            if between_requests and conn.draining:
                return None
            conn.between_requests = between_requests
            try:
                data = conn.sock.recv(RECV_SIZE)
            finally:
                conn.between_requests = between_requests = False
            conn.progress += 1
            conn.bytes_echoed += len(data)
            http.receive_data(data)

    def _read_body(self, http: h11.Connection, conn: Connection) -> bytes | None:
        """The whole body, or ``None`` when it passes ``--http-max-body`` (not read further)."""
        parts: list[bytes] = []
        size = 0
        while True:
            event = self._next_event(http, conn)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    return None
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:  # ConnectionClosed mid-body
                raise h11.RemoteProtocolError("connection closed in the middle of the body")

    # -- answering -----------------------------------------------------------------

    def _answer(
        self, http: h11.Connection, conn: Connection, request: h11.Request, number: int
    ) -> None:
        started = time.monotonic()
        status, size = self._exchange(http, conn, request, number)
        self.record(conn, request, status, size, time.monotonic() - started)

    def record(
        self, conn: Connection, request: h11.Request, status: int, size: int, seconds: float
    ) -> None:
        """Count one answered request, and log it with ``--access-log``."""
        method = request.method.decode("latin-1")
        key = (method if method in METHODS else "other", f"{status // 100}xx")
        self.requests[key] = self.requests.get(key, 0) + 1
        self.durations.observe(seconds)
        if self.access_log:
            target = request.target.decode("latin-1")[:200]
            access_log.info(
                "%s: %s %s %d, %d byte(s) in, %.3f s",
                conn.client, method[:16], target, status, size, seconds,
                extra={"client": conn.client, "method": method[:16], "target": target,
                       "status": status, "received": size, "duration": round(seconds, 6)},
            )  # fmt: skip

    def collect_metrics(self) -> Iterator[Any]:
        """This mode's Prometheus families, for the server's collector."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            "geventsrv_http_requests",
            "HTTP requests answered, by method and status class.",
            labels=["method", "status_class"],
        )
        for (method, status_class), count in sorted(self.requests.items()):
            requests.add_metric([method, status_class], count)
        yield requests
        yield HistogramMetricFamily(
            "geventsrv_http_request_duration_seconds",
            "From a request's head to the end of its response.",
            buckets=self.durations.cumulative(),
            sum_value=self.durations.total,
        )

    def _exchange(
        self, http: h11.Connection, conn: Connection, request: h11.Request, number: int
    ) -> tuple[int, int]:
        """Read the body, answer; the status sent and the body's size."""
        declared = request_length(request)
        body = (
            None
            if declared is not None and declared > self.max_body
            else self._read_body(http, conn)
        )
        if body is None:
            self._refuse(
                http, conn, 413, f"body larger than --http-max-body ({self.max_body} bytes)"
            )
            return 413, declared or self.max_body
        try:
            status, delay, close = self._controls(request)
        except BadControl as exc:
            self._respond(http, conn, request, 400, {"error": str(exc)}, close=False)
            return 400, len(body)
        if delay:
            gevent.sleep(delay)
        reflection = self.reflect(conn, request, body, number)
        self._respond(http, conn, request, status, reflection, close)
        return status, len(body)

    def _controls(self, request: h11.Request) -> tuple[int, float, bool]:
        query = parse_qs(urlsplit(request.target.decode("latin-1")).query)
        asked: dict[str, str] = {}
        for raw_name, raw_value in request.headers:  # h11 gives names lower-cased here
            header = raw_name.decode("latin-1")
            if header.startswith(CONTROL_PREFIX):
                asked[header[len(CONTROL_PREFIX) :]] = raw_value.decode("latin-1")
        for key, values in query.items():
            asked[key.lower()] = values[-1]
        status, delay = 200, 0.0
        if "status" in asked:
            try:
                status = int(asked["status"])
            except ValueError:
                status = 0
            if not 200 <= status <= 599:
                raise BadControl(f"status must be from 200 to 599, got {asked['status']!r}")
        if "delay" in asked:
            try:
                delay = float(asked["delay"])
            except ValueError:
                delay = -1.0
            if not 0 <= delay <= self.max_delay:
                raise BadControl(
                    f"delay must be 0 to {self.max_delay:g} seconds (--http-max-delay), "
                    f"got {asked['delay']!r}"
                )
        close = asked.get("close", "").lower() in ("1", "true", "yes")
        return status, delay, close

    def reflect(
        self, conn: Connection, request: h11.Request, body: bytes, number: int
    ) -> dict[str, object]:
        """The reflection of one request (the module's schema)."""
        target = request.target.decode("latin-1")
        parts = urlsplit(target)
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, value in request.headers.raw_items()
        ]
        return {
            "schema": SCHEMA,
            "request": {
                "number": number,
                "method": request.method.decode("latin-1"),
                "target": target,
                "path": parts.path,
                "query": parse_qs(parts.query, keep_blank_values=True),
                "http_version": request.http_version.decode("latin-1"),
                "headers": headers,
            },
            "body": describe_body(body),
            "client": client_sources(conn, headers),
            "proxy": describe_proxy(conn.proxy),
            "tls": conn.tls,
            "server": {
                "host": self.host,
                "worker": self.worker,
                "pid": self.pid,
                "local": format_address(*conn.sock.getsockname()[:2]),
                "connection": conn.number,
            },
        }

    def _respond(
        self,
        http: h11.Connection,
        conn: Connection,
        request: h11.Request,
        status: int,
        document: dict[str, object],
        close: bool,
    ) -> None:
        payload = json.dumps(document, separators=(", ", ": ")).encode() + b"\n"
        # A stopping server answers, then closes.
        headers = response_headers(b"application/json", payload, close or conn.draining)
        self._send(
            conn, http, h11.Response(status_code=status, headers=headers, reason=reason(status))
        )
        if request.method != b"HEAD":
            self._send(conn, http, h11.Data(data=payload))
        self._send(conn, http, h11.EndOfMessage())

    def _refuse(self, http: h11.Connection, conn: Connection, status: int, why: str) -> None:
        """Answer ``status``, a short text and ``Connection: close``, if a response may still go."""
        if http.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        payload = f"{why}\n".encode()
        headers = response_headers(b"text/plain; charset=utf-8", payload, close=True)
        try:
            response = h11.Response(status_code=status, headers=headers, reason=reason(status))
            self._send(conn, http, response)
            self._send(conn, http, h11.Data(data=payload))
            self._send(conn, http, h11.EndOfMessage())
        except h11.LocalProtocolError:  # the request was too broken to answer in kind
            return
        linger(conn)

    @staticmethod
    def _send(conn: Connection, http: h11.Connection, event: Any) -> None:
        data = http.send(event)
        if data:
            conn.sock.sendall(data)


def response_headers(content_type: bytes, payload: bytes, close: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response of this mode carries, ``Connection: close`` when asked."""
    headers = [
        (b"Content-Type", content_type),
        (b"Content-Length", str(len(payload)).encode()),
        (b"Date", http_date()),
        (b"Server", SERVER_NAME),
        (b"Cache-Control", b"no-store"),
    ]
    if close:
        headers.append((b"Connection", b"close"))
    return headers


def linger(conn: Connection) -> None:
    """Half-close, then read and drop what the client still sends, bounded in time and bytes."""
    try:
        conn.sock.shutdown(socket.SHUT_WR)
        with gevent.Timeout(LINGER_SECONDS):
            drained = 0
            while drained < LINGER_BYTES:
                data = conn.sock.recv(RECV_SIZE)
                if not data:
                    return
                drained += len(data)
    except (OSError, gevent.Timeout):
        return  # gone already, or lingered long enough: nothing left to protect


def request_length(request: h11.Request) -> int | None:
    """The request's Content-Length, if it declares one (h11 has checked it is a number)."""
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return None


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header's value (RFC 9110 5.6.7), formatted once a second, not per request."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


def reason(status: int) -> bytes:
    """The reason phrase of ``status`` (``b""`` for a code without a name)."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def head_size(request: h11.Request) -> int:
    """About how many bytes the request line and headers took on the wire."""
    line = len(request.method) + len(request.target) + 11
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())


def describe_body(body: bytes) -> dict[str, object]:
    """The body as the reflection shows it: its size, text or base64, and JSON when it parses."""
    described: dict[str, object] = {"size": len(body), "text": None, "base64": None, "json": None}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        described["base64"] = base64.b64encode(body).decode("ascii")
        return described
    described["text"] = text
    if text.strip():
        with contextlib.suppress(ValueError):
            described["json"] = json.loads(text)
    return described


def client_sources(conn: Connection, headers: list[list[str]]) -> dict[str, object]:
    """Every source of the client's address, side by side; none is chosen for the reader."""

    def values(name: str) -> list[str]:
        return [value for key, value in headers if key.lower() == name]

    forwarded_for = [
        part.strip() for value in values("x-forwarded-for") for part in value.split(",")
    ]
    forwarded = [element for value in values("forwarded") for element in parse_forwarded(value)]
    real_ip = values("x-real-ip")
    proxy = conn.proxy.source if conn.proxy is not None else None
    return {
        "peer": conn.peer,
        "proxy": format_address(*proxy) if proxy is not None else None,
        "x_forwarded_for": [part for part in forwarded_for if part] or None,
        "forwarded": forwarded or None,
        "x_real_ip": real_ip[-1].strip() if real_ip else None,
    }


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: ``for=1.2.3.4;proto=https, for="[2001:db8::1]"`` -> elements.

    Lenient: a pair without ``=`` is skipped rather than refused, since the
    reflection shows what arrived, it does not judge it.
    """
    elements = []
    for element in value.split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, text = pair.strip().partition("=")
            if sep and name:
                pairs[name.strip().lower()] = text.strip().strip('"')
        if pairs:
            elements.append(pairs)
    return elements
