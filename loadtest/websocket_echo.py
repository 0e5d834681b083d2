"""A locust user for the http mode's WebSocket echo: ``locust -f loadtest/ WebSocketEchoUser
-H ws://HOST:PORT`` (or ``http://``).

Each user holds one WebSocket (opened on the host's port, ``ws://`` for an
``http://`` or ``ws://`` host, ``wss://`` for ``https://`` or ``wss://``) and sends fresh
random text and binary messages, one at a time; every echo must come back with the same
opcode and the same bytes, or the exchange is a failure (and a headless run
exits 1). Its client is wsproto over a plain socket, which locust's gevent
makes cooperative: the same model as the server.

A run against a ``tcp://`` or ``tls://`` host leaves it out (see ``_users.py``);
named against one, it stops at once.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import string
import time
from typing import Any
from urllib.parse import urlsplit

from locust import User, constant, task
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    RejectConnection,
    Request,
    TextMessage,
)  # fmt: skip
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

TIMEOUT = 10.0


class EchoMismatch(Exception):
    """An echo that did not match what was sent."""


class WebSocketClient:
    """One client WebSocket: connect, send a message, read the next whole one, close."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or "127.0.0.1"
        self.sock: Any = socket.create_connection((host, port), timeout=TIMEOUT)
        if secure:
            self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=host)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{host}:{port}", target="/loadtest")))
        try:
            for event in self._events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"the upgrade was refused: {event.status_code}")
        except RemoteProtocolError as exc:
            self.sock.close()
            raise ConnectionError(f"not a WebSocket answer: {exc}") from None

    def _events(self) -> Any:
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.ws.receive_data(data)
            yield from self.ws.events()

    def exchange(self, message: Message[Any]) -> Message[Any]:
        """Send ``message``; the next whole message that comes back."""
        self.sock.sendall(self.ws.send(message))
        parts: list[Any] = []
        for event in self._events():
            if isinstance(event, CloseConnection):
                raise ConnectionError(f"closed by the server: {event.code} {event.reason}")
            if isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        return TextMessage(data="".join(parts))
                    return BytesMessage(data=b"".join(parts))
        raise AssertionError("unreachable")

    def close(self) -> None:
        with contextlib.suppress(OSError, LocalProtocolError):  # the run is ending: fine if dead
            self.sock.sendall(self.ws.send(CloseConnection(code=1000, reason="done")))
        self.sock.close()


class WebSocketEchoUser(User):
    """Random text and binary messages on one WebSocket; every echo checked byte for byte."""

    #: The hosts it speaks to: ``ws://`` as ``http://``, ``wss://`` as ``https://``.
    schemes = ("http", "https", "ws", "wss")
    wait_time = constant(0)
    weight = 1

    def on_start(self) -> None:
        self.client: WebSocketClient | None = None
        if not (self.host or "").startswith(("http://", "https://", "ws://", "wss://")):
            self.stop()  # not an HTTP host: the echo users' run
            return
        self.random = random.Random()

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()

    @task
    def echo(self) -> None:
        if self.client is None:
            started = time.perf_counter()
            try:
                self.client = WebSocketClient(self.host or "")
            except OSError as exc:
                self.report("connect", started, 0, exc)
                time.sleep(0.1)  # a server that refuses is not hammered
                return
        size = self.random.randint(0, 4096)
        if self.random.random() < 0.5:
            message: Message[Any] = TextMessage(
                data="".join(self.random.choices(string.printable + "é✓", k=size))
            )
            name = "text"
        else:
            message = BytesMessage(data=self.random.randbytes(size))
            name = "binary"
        started = time.perf_counter()
        problem: Exception | None = None
        try:
            echoed = self.client.exchange(message)
            if type(echoed) is not type(message) or echoed.data != message.data:
                problem = EchoMismatch(f"the {name} echo came back different")
        except OSError as exc:
            problem = exc
        self.report(f"echo {name}", started, size, problem)
        if isinstance(problem, OSError):
            self.client = None  # gone: the next task opens a new one

    def report(self, name: str, started: float, size: int, problem: Exception | None) -> None:
        """One exchange to locust's statistics, as a request of type ``WS``."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=elapsed_ms, response_length=size,
            exception=problem, context={},
        )  # fmt: skip
