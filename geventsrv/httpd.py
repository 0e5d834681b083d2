"""The operator's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz``.

Served by gevent's WSGI server in the same process and on the same hub as the
echo service: one more greenlet per scrape, never a thread, and no request
of the echo path waits for it. ``/healthz`` is 200 while the process runs its
event loop (a hub that cannot answer it is stuck); ``/readyz`` is 200 while
the server accepts clients and 503 from the first SIGTERM on.

The endpoint listens on ``--metrics HOST:PORT`` or, for a supervisor's
worker, on the Unix socket the supervisor chose (``--metrics-socket``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from geventsrv.addresses import format_address
from geventsrv.config import parse_host_port
from geventsrv.listen import ListenError

log = logging.getLogger("geventsrv.metrics")

TEXT = "text/plain; charset=utf-8"


class HealthApp:
    """The WSGI application: ``metrics()`` gives the exposition; ``unready()`` is ``None``
    when ready, otherwise why not (``"stopping"``), said in /readyz's 503 body."""

    def __init__(self, metrics: Callable[[], bytes], unready: Callable[[], str | None]) -> None:
        self.metrics = metrics
        self.unready = unready

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST

        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, kind, body = "405 Method Not Allowed", TEXT, b"GET only\n"
        elif path == "/metrics":
            status, kind, body = "200 OK", CONTENT_TYPE_LATEST, self.metrics()
        elif path == "/healthz":
            status, kind, body = "200 OK", TEXT, b"ok\n"
        elif path == "/readyz":
            reason = self.unready()
            status = "200 OK" if reason is None else "503 Service Unavailable"
            kind, body = TEXT, b"ready\n" if reason is None else f"not ready: {reason}\n".encode()
        else:
            status, kind, body = "404 Not Found", TEXT, b"/metrics, /healthz or /readyz\n"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]


def open_endpoint_socket(address: str | None, unix_path: str | None) -> socket.socket:
    """The endpoint's listening socket; :class:`~geventsrv.listen.ListenError` if it cannot be."""
    try:
        if unix_path is not None:
            if os.path.exists(unix_path):
                os.unlink(unix_path)  # left by a worker that died: it is ours to replace
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(unix_path)
        else:
            assert address is not None
            host, port = parse_host_port(address, "metrics")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        where = unix_path or address
        raise ListenError(
            exc.errno, f"cannot serve metrics on {where}: {exc.strerror or exc}"
        ) from None
    return sock


class Endpoint:
    """A running endpoint; :meth:`close` stops it."""

    def __init__(self, app: HealthApp, address: str | None, unix_path: str | None = None) -> None:
        from gevent.pywsgi import WSGIServer

        self.unix_path = unix_path
        self.listener = open_endpoint_socket(address, unix_path)
        self.server = WSGIServer(self.listener, app, log=None, error_log=log)
        self.server.start()
        if unix_path is None:
            host, port = self.listener.getsockname()[:2]
            log.info("metrics on http://%s/metrics", format_address(host, port))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return host, port

    def close(self) -> None:
        self.server.stop(timeout=1)
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
