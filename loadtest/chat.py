"""A locust user for geventsrv's chat mode (``python -m geventsrv --mode chat``).

Each user joins the room, says a line now and then, and checks every line it
hears from the others: the sender's tag, a CRC of the text, and the delivery
latency (from the send time carried in the line). Every line heard is one
``CHAT deliver`` request in locust's stats; a malformed or corrupted line is a
failure. Against a server that is not in chat mode (no ``<announce>`` greeting
within two seconds), the user logs one warning and stops: the other users
of a mixed run go on.
"""

from __future__ import annotations

import re
import time
import zlib
from typing import Any

import gevent
from _users import EchoUser, log
from gevent import socket
from locust import between, task
from locust.exception import StopUser

#: Seconds to wait for the chat server's greeting before deciding it is not one.
GREETING_TIMEOUT = 2.0
LINE = re.compile(rb"<user\d+> (\d+) ([0-9a-f]{8}) ([0-9a-f]*)\n")
_warned: list[bool] = []


class ChatUser(EchoUser):
    """Joins the chat room, talks every 0.5 to 1.5 s, verifies what the others say."""

    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        super().on_start()
        if self.address is None:
            return  # a bad host: the base class has stopped this user
        start = time.perf_counter()
        try:
            # A chat server greets at once; an echo server says nothing.
            self.sock = socket.create_connection(self.address, timeout=GREETING_TIMEOUT)
        except OSError as exc:
            self._report("join", start, 0, exc)
            self.stop()  # not StopUser: locust logs a traceback for it in on_start
            return
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        try:
            greeting = self._line()
        except (OSError, EOFError):
            greeting = b""
        if not greeting.startswith(b"<announce>"):
            if not _warned:
                _warned.append(True)
                log.warning("ChatUser: the server is not in chat mode; chat users stop")
            self.sock.close()
            self.stop()
            return
        self._report("join", start, len(greeting), None)
        self.sock.settimeout(None)  # the listener waits as long as the room is quiet
        self.listener = gevent.spawn(self._listen)

    def on_stop(self) -> None:
        listener = getattr(self, "listener", None)
        if listener is not None:
            listener.kill()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()

    @task
    def say(self) -> None:
        text = self.random.randbytes(self.random.randint(1, 200)).hex().encode()
        line = b"%d %08x %s\n" % (time.time_ns(), zlib.crc32(text), text)
        start = time.perf_counter()
        error: Exception | None = None
        try:
            self.sock.sendall(line)
        except OSError as exc:
            error = exc
        self._report("say", start, len(line), error)
        if error is not None:
            raise StopUser()

    def _line(self) -> bytes:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line + b"\n"

    def _listen(self) -> None:
        while True:
            try:
                line = self._line()
            except (OSError, EOFError) as exc:
                self._report("deliver", time.perf_counter(), 0, exc)
                return
            if line.startswith(b"<announce>"):
                continue
            match = LINE.fullmatch(line)
            if match is None or zlib.crc32(match.group(3)) != int(match.group(2), 16):
                error = ValueError(f"malformed or corrupted chat line: {line[:80]!r}")
                self._report("deliver", time.perf_counter(), len(line), error)
                continue
            latency_s = (time.time_ns() - int(match.group(1))) / 1e9
            self._report("deliver", time.perf_counter() - latency_s, len(line), None)

    def _report(self, name: str, start: float, length: int, error: Any) -> None:
        self.environment.events.request.fire(
            request_type="CHAT",
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=error,
            context={},
        )
