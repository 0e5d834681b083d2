"""The locustfile ``bench cluster`` runs: echo users that know which host served them.

Loaded by locust (``locust -f`` this file, master and workers alike), not
imported by geventsrv. Each user connects to the balancer, reads the one JSON
line that ``--mode info`` sends first (its ``local`` field is the backend
host's address), then echoes ``SIZE`` random bytes ``REQUESTS`` times,
checking every byte, and closes and reconnects: connections of bounded life,
as real clients' are, so a draining host sees them end on their own.

Every outcome goes to locust's stats (type ``CONNECT`` or ``ECHO``, named by
the backend address, so locust's table shows the share of each host), and to
a :class:`~geventsrv.bench.distload.Recorder` that keeps counts per 100 ms, per host, plus every
failure with its time: locust's distributed stats arrive every few seconds,
too coarse to say when a failover ended. Each locust process writes its
record to ``$GEVENTSRV_CLUSTER_EVENTS/<pid>.json`` when it quits.

Settings come from the environment (set by ``bench cluster``):
``GEVENTSRV_CLUSTER_EVENTS`` (directory), ``GEVENTSRV_CLUSTER_SIZE`` (bytes,
default 1024), ``GEVENTSRV_CLUSTER_REQUESTS`` (per connection, default 50),
``GEVENTSRV_CLUSTER_PROXY_LOCAL`` (``1``: send a PROXY v2 LOCAL header first,
to talk to a host directly, bypassing the balancer).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from typing import Any

from locust import User, constant, events, task

from geventsrv.bench.distload import Recorder
from geventsrv.proxyproto import ProxyHeader, encode
from geventsrv.testing.process import recv_exactly

TIMEOUT = 10.0
INFO_LIMIT = 8192
#: A PROXY protocol v2 header with the LOCAL command and no addresses.
PROXY_V2_LOCAL = encode(ProxyHeader(2, "LOCAL", "UNSPEC/UNSPEC"))


RECORDER = Recorder()


def write_record(**_: Any) -> None:
    directory = os.environ.get("GEVENTSRV_CLUSTER_EVENTS")
    if directory and (RECORDER.buckets or RECORDER.failures):
        RECORDER.write(directory)


events.quitting.add_listener(write_record)  # type: ignore[no-untyped-call]


def describe_error(exc: BaseException) -> str:
    """A short class of failure: the verdicts count resets, refusals, EOFs apart."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, EOFError):
        return "eof"
    if isinstance(exc, ValueError):
        return "wrong bytes"
    return type(exc).__name__


class ClusterEchoUser(User):
    """Connect, learn the host from the info line, echo REQUESTS times, close, repeat."""

    wait_time = constant(0)

    def on_start(self) -> None:
        host, _, port = (self.host or "").removeprefix("tcp://").rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.size = int(os.environ.get("GEVENTSRV_CLUSTER_SIZE", "1024"))
        self.requests = int(os.environ.get("GEVENTSRV_CLUSTER_REQUESTS", "50"))
        self.proxy_local = os.environ.get("GEVENTSRV_CLUSTER_PROXY_LOCAL") == "1"
        self.random = random.Random()

    @task
    def connection(self) -> None:
        start = time.time()
        try:
            sock, backend = self._open()
        except (OSError, EOFError, ValueError) as exc:
            self._report("CONNECT", "connect", start, exc)
            return
        self._report("CONNECT", backend, start, None)
        try:
            for _ in range(self.requests):
                payload = self.random.randbytes(self.size)
                start = time.time()
                try:
                    sock.sendall(payload)
                    reply = recv_exactly(sock, len(payload))
                    if reply != payload:
                        raise ValueError("reply differs from the request")
                except (OSError, EOFError, ValueError) as exc:
                    self._report("ECHO", backend, start, exc)
                    return
                self._report("ECHO", backend, start, None)
        finally:
            sock.close()

    def _open(self) -> tuple[socket.socket, str]:
        sock = socket.create_connection(self.address, timeout=TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.proxy_local:
                sock.sendall(PROXY_V2_LOCAL)
            line = b""
            while not line.endswith(b"\n"):
                chunk = sock.recv(INFO_LIMIT - len(line))
                if not chunk:
                    raise EOFError("closed before the info line")
                line += chunk
                if len(line) >= INFO_LIMIT:
                    raise ValueError("no end to the info line")
            info = json.loads(line)
            if not isinstance(info, dict) or "local" not in info:
                raise ValueError("the first line is not geventsrv's info line")
            return sock, str(info["local"])
        except BaseException:
            sock.close()
            raise

    def _report(self, kind: str, host: str, start: float, error: BaseException | None) -> None:
        now = time.time()
        millis = (now - start) * 1000.0
        described = None if error is None else describe_error(error)
        RECORDER.add(start, host, kind.lower(), millis, described)
        self.environment.events.request.fire(
            request_type=kind,
            name=host,
            response_time=millis,
            response_length=self.size if kind == "ECHO" else 0,
            exception=None if error is None else Exception(f"{described}: {error}"),
            context={},
        )
