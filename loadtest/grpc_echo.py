"""A locust user for the http mode's gRPC echo: ``locust -f loadtest/ GrpcEchoUser
-H grpc://HOST:PORT`` (HTTP/2 in clear) or ``grpcs://HOST:PORT`` (TLS, ALPN h2).

Each user holds one HTTP/2 connection and calls ``geventsrv.echo.v1.Echo/Unary``
with a fresh random payload each time, one call at a time; the answer must be
the same message, byte for byte, and the call must end with ``grpc-status: 0``,
or the call is a failure (and a headless run exits 1). Its client is the ``h2``
library over a plain socket, which locust's gevent makes cooperative: grpcio's
own client is not made to run inside a gevent process.

A run against another scheme's host leaves it out (see ``_users.py``).
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import ProtocolError
from locust import User, constant, task

TIMEOUT = 10.0
METHOD = b"/geventsrv.echo.v1.Echo/Unary"


class CallFailed(Exception):
    """A call that did not come back as it went, or did not end with status 0."""


def echo_message(payload: bytes) -> bytes:
    """An ``EchoMessage`` whose ``payload`` field (2) is ``payload``, gRPC-framed."""
    size, length = len(payload), bytearray()
    while True:  # the payload's length as a protobuf varint
        byte = size & 0x7F
        size >>= 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    message = b"\x12" + bytes(length) + payload
    return b"\0" + len(message).to_bytes(4, "big") + message


class GrpcClient:
    """One HTTP/2 connection that makes unary calls, one at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "grpcs"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        self.authority = f"{host}:{port}".encode()
        self.scheme = b"https" if secure else b"http"
        self.sock: Any = socket.create_connection((host, port), timeout=TIMEOUT)
        if secure:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["h2"])
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        # The server's preface is a SETTINGS frame (RFC 9113 3.4): anything else is not an
        # HTTP/2 server, and would leave the client waiting for a frame that never ends.
        first = b""
        while len(first) < 9:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            first += data
        if first[3] != 0x4:
            self.sock.close()
            raise ConnectionError("not an HTTP/2 server: it did not open with SETTINGS")
        self.h2.receive_data(first)

    def call(self, framed: bytes) -> bytes:
        """One call sending ``framed``; the answer's body, or :class:`CallFailed`."""
        h2 = self.h2
        stream = h2.get_next_available_stream_id()
        h2.send_headers(stream, [
            (b":method", b"POST"), (b":scheme", self.scheme), (b":path", METHOD),
            (b":authority", self.authority), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ])  # fmt: skip
        h2.send_data(stream, framed, end_stream=True)  # within the default window
        self.sock.sendall(h2.data_to_send())
        body, status = bytearray(), None
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in h2.receive_data(data):
                if isinstance(event, DataReceived):
                    body += event.data
                    h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (ResponseReceived, TrailersReceived)):
                    fields = dict(event.headers)
                    status = fields.get(b"grpc-status", status)
                elif isinstance(event, StreamReset):
                    raise CallFailed(f"the stream was reset ({event.error_code})")
                elif isinstance(event, ConnectionTerminated):
                    raise ConnectionError(f"GOAWAY ({event.error_code})")
                elif isinstance(event, StreamEnded) and event.stream_id == stream:
                    self.sock.sendall(h2.data_to_send())
                    if status != b"0":
                        raise CallFailed(f"grpc-status {status!r}")
                    return bytes(body)
            self.sock.sendall(h2.data_to_send())

    def close(self) -> None:
        with contextlib.suppress(OSError, ProtocolError):  # the run is ending: fine if dead
            self.h2.close_connection()
            self.sock.sendall(self.h2.data_to_send())
        self.sock.close()


class GrpcEchoUser(User):
    """Unary calls with random payloads on one connection; every echo checked byte for byte."""

    #: The hosts it speaks to: gRPC over h2c, or over TLS.
    schemes = ("grpc", "grpcs")
    wait_time = constant(0)
    weight = 1

    def on_start(self) -> None:
        self.client: GrpcClient | None = None
        self.random = random.Random()

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()

    @task
    def unary(self) -> None:
        if not (self.host or "").startswith(("grpc://", "grpcs://")):
            self.stop()  # another scheme's run (see _users.py)
            return
        if self.client is None:
            started = time.perf_counter()
            try:
                self.client = GrpcClient(self.host or "")
            except OSError as exc:
                self.report(started, 0, exc)
                time.sleep(0.1)  # a server that refuses is not hammered
                return
        payload = self.random.randbytes(self.random.randint(0, 4096))
        framed = echo_message(payload)
        started = time.perf_counter()
        problem: Exception | None = None
        try:
            if self.client.call(framed) != framed:
                problem = CallFailed("the echo came back different")
        except (OSError, CallFailed, ProtocolError) as exc:
            problem = exc
        self.report(started, len(payload), problem)
        if isinstance(problem, (OSError, ProtocolError)):
            self.client = None  # gone: the next task opens a new connection

    def report(self, started: float, size: int, problem: Exception | None) -> None:
        """One call to locust's statistics, as a request of type ``gRPC``."""
        self.environment.events.request.fire(
            request_type="gRPC", name="Echo/Unary",
            response_time=(time.perf_counter() - started) * 1000, response_length=size,
            exception=problem, context={},
        )  # fmt: skip
