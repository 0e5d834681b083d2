"""gRPC on the http mode: the echo service and health, each call an exchange of its own.

A request whose ``content-type`` is ``application/grpc`` (``+proto`` or any
other suffix) is a gRPC call, on the same port and the same HTTP/2 connection
handling as every request (:mod:`geventsrv.http.h2`): its stream runs in a
greenlet of its own, which reads the call's messages (:mod:`geventsrv.http.grpcwire`)
from the exchange's body as they arrive and sends its answer's as it makes
them, then trailers with ``grpc-status``. An error before the first message
out is a trailers-only answer, as gRPC's own servers send.

Services (``echo.proto`` beside this module): ``geventsrv.echo.v1.Echo``,
whose messages pass through as bytes (``Unary``, ``ServerStream``,
``ClientStream``, ``Bidi``) and whose ``Reflect`` answers with the
reflection of the call; ``grpc.health.v1.Health`` (``Check``, ``Watch``,
``List``), ``SERVING`` while the server is ready and ``NOT_SERVING`` once
it is stopping, so a front's health check sees a rolling restart; and
server reflection (:mod:`geventsrv.http.grpcreflection`).

Per call: the HTTP controls as metadata (``x-echo-delay``, ``x-echo-bytes``,
``x-echo-count``, ``x-echo-interval``, ``x-echo-header``, ``x-echo-trailer``,
``x-echo-status`` for an HTTP status instead of an answer), and
``x-echo-grpc-status`` / ``x-echo-grpc-message``; ``grpc-timeout`` (the
call ends with DEADLINE_EXCEEDED when it passes); ``grpc-encoding`` gzip or
deflate, answered in kind. Bounded: a message at most ``--grpc-max-message``
bytes, compressed or not (RESOURCE_EXHAUSTED past it). Whatever a call does
wrong costs its stream only, with the status gRPC gives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gevent

from geventsrv.http.controls import PLAIN, BadControl, Controls, ControlsJudge
from geventsrv.http.exchange import HttpError
from geventsrv.http.grpcreflection import shipped
from geventsrv.http.grpcwire import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    ENCODINGS,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    RESOURCE_EXHAUSTED,
    STATUS_NAMES,
    UNAVAILABLE,
    UNIMPLEMENTED,
    CallError,
    MessageReader,
    field,
    fields,
    framed,
    number_field,
    parse_timeout,
    percent_encoded,
)

if TYPE_CHECKING:
    from geventsrv.http.exchange import Exchange, Header
    from geventsrv.http.reflector import Answerer

access_log = logging.getLogger("geventsrv.access")

ECHO = "geventsrv.echo.v1.Echo"
HEALTH = "grpc.health.v1.Health"
#: ``grpc.health.v1.HealthCheckResponse.ServingStatus``.
SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3
#: Seconds between two looks at the server's readiness, for a health Watch.
WATCH_POLL = 0.2
#: The encodings a client may use, as the server says in ``grpc-accept-encoding``.
ACCEPTED = b"identity," + ",".join(ENCODINGS).encode()
#: What ``x-echo-bytes=N`` fills a payload with.
FILLER = b"0123456789abcdef"
#: An answer's headers when nothing changes them, and a call's end when all went well.
PLAIN_HEADERS: list[Header] = [
    (b"content-type", b"application/grpc"), (b"grpc-accept-encoding", ACCEPTED)
]  # fmt: skip
OK_STATUS: list[Header] = [(b"grpc-status", b"0")]


class DeadlineExceeded(Exception):
    """The call's ``grpc-timeout`` passed (raised in its greenlet by a timer)."""


def is_grpc(content_type: bytes | None) -> bool:
    """Whether a request's ``content-type`` makes it a gRPC call."""
    return content_type is not None and (
        content_type == b"application/grpc" or content_type.startswith(b"application/grpc+")
    )


class Call:
    """One call as a method sees it: the messages that come, and what it sends back."""

    __slots__ = (
        "controls", "encoding", "exchange", "extra", "grpc_status", "messages", "sent",
        "timeout",
    )  # fmt: skip

    def __init__(self, exchange: Exchange, most: int) -> None:
        self.exchange = exchange
        self.controls = PLAIN
        #: The call's deadline in seconds from now (``grpc-timeout``), if it has one.
        self.timeout: float | None = None
        #: How the client compressed its messages, and how the answer's are (``None``: not).
        self.encoding: str | None = None
        self.messages = MessageReader((), most, None)
        #: Messages sent back, and the status the call ended with.
        self.sent = 0
        self.grpc_status = OK
        self.extra: list[Header] = []

    def open(self, controls: Controls) -> None:
        """Take the call's metadata (``CallError`` for what cannot be served) and the
        controls judged; its messages can then be read."""
        self.controls = controls
        self.extra = controls.headers
        exchange = self.exchange
        accepted: list[bytes] = []
        for name, value in exchange.request.headers:
            lower = name.lower()
            if lower == b"grpc-timeout":
                try:
                    self.timeout = parse_timeout(value)
                except ValueError as exc:
                    raise CallError(INVALID_ARGUMENT, str(exc)) from None
            elif lower == b"grpc-encoding" and value != b"identity":
                encoding = value.decode("latin-1")
                if encoding not in ENCODINGS:
                    raise CallError(UNIMPLEMENTED, f"grpc-encoding {encoding[:30]!r} not served")
                self.encoding = encoding
            elif lower == b"grpc-accept-encoding":
                accepted += [part.strip() for part in value.split(b",")]
        self.messages = MessageReader(exchange.body(), self.messages.most, self.encoding)
        # The answer is compressed as the client's messages were, if it accepts that.
        if self.encoding is not None and self.encoding.encode() not in accepted:
            self.encoding = None

    def one(self) -> bytes:
        """The call's only message (a unary or server-streaming method's)."""
        first = next(self.messages, None)
        if first is None or next(self.messages, None) is not None:
            raise CallError(INTERNAL, "this method takes exactly one message")
        return first

    def send(self, message: bytes) -> None:
        """One message of the answer (its headers first, with the first one)."""
        exchange = self.exchange
        if not exchange.started:
            exchange.respond(200, self._headers(), None, date=False)
        exchange.send(framed(message, self.encoding))
        self.sent += 1

    def finish(self, code: int, message: str = "") -> None:
        """End the call with ``code`` (and ``message``): trailers after the answer's
        messages, or headers and trailers in one (trailers-only) if none was sent."""
        self.grpc_status = code
        status = OK_STATUS if code == OK else [(b"grpc-status", b"%d" % code)]
        if message:
            status = [*status, (b"grpc-message", percent_encoded(message[:500]))]
        exchange = self.exchange
        if exchange.started:
            trailers = self.controls.trailers
            exchange.end(status + trailers if trailers else status)
        else:
            exchange.respond(200, self._headers() + status + self.controls.trailers, None, False)
            exchange.end()

    def _headers(self) -> list[Header]:
        if self.encoding is None and not self.extra:
            return PLAIN_HEADERS
        headers = list(PLAIN_HEADERS)
        if self.encoding is not None:
            headers.append((b"grpc-encoding", self.encoding.encode()))
        return headers + self.extra


class GrpcService:
    """The gRPC services of the http mode, and what they have counted."""

    def __init__(
        self, answerer: Answerer, judge: ControlsJudge, max_message: int, log_each: bool
    ) -> None:
        self.answerer = answerer
        self.judge = judge
        self.max_message = max_message
        self.log_each = log_each
        #: Whether the server is ready (set by the mode from the server's own readiness).
        self.ready: Callable[[], bool] = lambda: True
        #: Calls ended, by (method, grpc-status name).
        self.counts: dict[tuple[str, str], int] = {}
        self.methods: dict[str, Callable[[Call], None]] = {
            f"/{ECHO}/Unary": self.unary,
            f"/{ECHO}/ServerStream": self.server_stream,
            f"/{ECHO}/ClientStream": self.client_stream,
            f"/{ECHO}/Bidi": self.bidi,
            f"/{ECHO}/Reflect": self.reflect,
            f"/{HEALTH}/Check": self.check,
            f"/{HEALTH}/Watch": self.watch,
            f"/{HEALTH}/List": self.list,
            **dict.fromkeys(
                (f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
                 for version in ("v1", "v1alpha")),
                self.reflection,
            ),
        }  # fmt: skip

    def __call__(self, exchange: Exchange) -> None:
        started = time.monotonic()
        request = exchange.request
        if request.method != b"POST":
            raise HttpError(405, "a gRPC call is a POST")
        path = request.target.decode("latin-1")
        method = self.methods.get(path)
        name = path if method is not None else "unknown"
        call = Call(exchange, self.max_message)
        try:
            try:
                controls = self.judge(request, b"") if request.controls else PLAIN
            except BadControl as exc:
                raise CallError(INVALID_ARGUMENT, str(exc)) from None
            call.open(controls)
            if controls.status != 200:  # an HTTP status instead: how does the front map it?
                raise HttpError(controls.status, "asked for by x-echo-status")
            if method is None:
                raise CallError(UNIMPLEMENTED, f"no method {path[:100]!r} here")
            if call.timeout is None and not request.controls:  # the common call, kept short
                method(call)
            else:
                with gevent.Timeout(call.timeout, DeadlineExceeded()):
                    if controls.delay:
                        gevent.sleep(controls.delay)
                    asked = self._asked_status(request.controls)
                    if asked is not None:
                        for _ in call.messages:  # read, then end as asked
                            pass
                        raise CallError(*asked)
                    method(call)
            call.finish(OK)
        except CallError as exc:
            call.finish(exc.code, exc.message)
        except DeadlineExceeded:
            call.finish(DEADLINE_EXCEEDED, "the deadline (grpc-timeout) passed")
        except HttpError:
            raise  # answered in HTTP, and counted there
        except BaseException:
            call.grpc_status = CANCELLED  # the client, or its connection, went away
            self._record(exchange, name, call, time.monotonic() - started)
            raise
        self._record(exchange, name, call, time.monotonic() - started)

    @staticmethod
    def _asked_status(controls: list[tuple[str, bytes]]) -> tuple[int, str] | None:
        """``x-echo-grpc-status`` (and ``x-echo-grpc-message``), if asked for."""
        asked = dict(controls)
        if "grpc-status" not in asked:
            return None
        text = asked["grpc-status"].decode("latin-1")
        if not text.isdigit() or int(text) >= len(STATUS_NAMES):
            raise CallError(INVALID_ARGUMENT, f"grpc-status must be 0 to 16, got {text[:20]!r}")
        message = asked.get("grpc-message", b"").decode("utf-8", "replace")
        code = int(text)
        return (code, message or f"asked for by x-echo-grpc-status: {STATUS_NAMES[code]}")

    def _record(self, exchange: Exchange, name: str, call: Call, seconds: float) -> None:
        status = STATUS_NAMES[call.grpc_status]
        key = (name, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.log_each:
            client = exchange.conn.client
            received = call.messages.count
            access_log.info(
                "%s: gRPC %s %s, %d message(s) in, %d out, %.3f s",
                client, name[:200], status, received, call.sent, seconds,
                extra={"client": client, "method": "POST", "target": name[:200],
                       "grpc_status": call.grpc_status, "messages_in": received,
                       "messages_out": call.sent, "duration": round(seconds, 6)},
            )  # fmt: skip

    # -- geventsrv.echo.v1.Echo ------------------------------------------------------------

    def _answer(self, call: Call, message: bytes) -> bytes:
        """The message to send for ``message``: itself, or ``x-echo-bytes`` of payload."""
        size = call.controls.size
        if size is None:
            return message
        if size > self.max_message - 8:
            raise CallError(RESOURCE_EXHAUSTED, "x-echo-bytes over --grpc-max-message")
        return field(2, (FILLER * (size // len(FILLER) + 1))[:size])

    def unary(self, call: Call) -> None:
        call.send(self._answer(call, call.one()))

    def server_stream(self, call: Call) -> None:
        message = self._answer(call, call.one())
        asked = {name for name, _ in call.exchange.request.controls}
        interval = call.controls.interval if "interval" in asked else 0.0
        for number in range(call.controls.count):
            if number and interval:
                gevent.sleep(interval)
                if call.exchange.draining:
                    raise CallError(UNAVAILABLE, "the server is stopping")
            call.send(message)

    def client_stream(self, call: Call) -> None:
        parts, size = [], 0
        for message in call.messages:
            part = field(1, message)
            size += len(part)
            if size > self.max_message:
                raise CallError(RESOURCE_EXHAUSTED, "the messages together are over the bound")
            parts.append(part)
        call.send(b"".join(parts))

    def bidi(self, call: Call) -> None:
        for message in call.messages:
            call.send(self._answer(call, message))

    def reflect(self, call: Call) -> None:
        message = call.one()
        call.send(field(1, self.answerer.reflect(call.exchange, message)))

    # -- grpc.health.v1.Health -------------------------------------------------------------

    def _health(self, call: Call, service: str) -> int:
        if service not in ("", ECHO, HEALTH):
            return SERVICE_UNKNOWN
        return SERVING if self.ready() and not call.exchange.draining else NOT_SERVING

    @staticmethod
    def _service(message: bytes) -> str:
        """``HealthCheckRequest.service``."""
        try:
            named = [value for number, value in fields(message) if number == 1]
        except ValueError as exc:
            raise CallError(INTERNAL, f"a HealthCheckRequest that does not parse: {exc}") from None
        value = named[-1] if named else b""
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""

    def check(self, call: Call) -> None:
        service = self._service(call.one())
        status = self._health(call, service)
        if status == SERVICE_UNKNOWN:
            raise CallError(NOT_FOUND, f"no service {service[:100]!r} here")
        call.send(number_field(1, status))

    def watch(self, call: Call) -> None:
        """The status now, then each change; NOT_SERVING once the server stops, and the
        call ends (UNAVAILABLE) so that the connection may close."""
        service = self._service(call.one())
        last = self._health(call, service)
        call.send(number_field(1, last))
        while True:
            gevent.sleep(WATCH_POLL)
            status = self._health(call, service)
            if status != last:
                call.send(number_field(1, status))
                last = status
            if call.exchange.draining:
                raise CallError(UNAVAILABLE, "the server is stopping")

    def list(self, call: Call) -> None:
        """Every service's status (``HealthListResponse``: a map, entries of name and
        ``HealthCheckResponse``)."""
        call.one()
        entries = (
            field(1, field(1, name.encode()) + field(2, number_field(1, self._health(call, name))))
            for name in ("", ECHO, HEALTH)
        )
        call.send(b"".join(entries))

    # -- grpc.reflection.v1 and v1alpha ------------------------------------------------------

    def reflection(self, call: Call) -> None:
        """One answer per request, as they come (grpcurl asks several on one stream)."""
        descriptors = shipped()
        for message in call.messages:
            try:
                answer = descriptors.answer(message)
            except ValueError as exc:
                raise CallError(INVALID_ARGUMENT, f"a request that does not parse: {exc}") from None
            call.send(answer)

    # -- metrics --------------------------------------------------------------------------

    def collect_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        calls = CounterMetricFamily(
            "geventsrv_grpc_calls",
            "gRPC calls ended, by method (unknown: a method not served) and grpc-status.",
            labels=["method", "grpc_status"],
        )
        for (method, status), count in sorted(self.counts.items()):
            calls.add_metric([method, status], count)
        yield calls
