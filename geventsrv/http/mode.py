"""``--mode http``: the handler the mode table names, and what it counts.

One :class:`HttpMode` per server: it holds the application (written once for
every HTTP version) and the request counts, and serves each connection with
the front of the version the connection speaks: HTTP/2 when TLS settled ``h2``
by ALPN, else HTTP/1.1 (:mod:`geventsrv.http.h1`), which hands the connection
to HTTP/2 (:mod:`geventsrv.http.h2`) when it opens with HTTP/2's preface or
asks to upgrade to h2c.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from geventsrv.http import h1, h2
from geventsrv.http.accounting import Requests
from geventsrv.http.app import HttpApp

if TYPE_CHECKING:
    from geventsrv.config import Config
    from geventsrv.connection import Connection


class HttpMode:
    """The http mode's connection handler (the contract of :mod:`geventsrv.connection`)."""

    def __init__(self, config: Config) -> None:
        self.app = HttpApp(config)
        self.requests = Requests(config.access_log)
        self.header_timeout = config.http_header_timeout
        self.max_head = config.http_max_head
        self.max_body = config.http_max_body
        self.http2 = not config.http1_only
        self.limits = h2.Limits(
            config.http2_max_streams,
            config.http2_window,
            config.http2_max_frame,
            config.http_max_head,
            config.idle_timeout,
            enable_connect_protocol=True,  # WebSocket over HTTP/2 (RFC 8441)
        )

    def __call__(self, conn: Connection) -> None:
        finished = self.requests.finished
        if self.http2 and conn.tls is not None and conn.tls.get("alpn") == "h2":
            return h2.serve(conn, self.app, finished, self.limits)
        switch = functools.partial(self._switch, conn) if self.http2 else None
        h1.serve(conn, self.app, finished, self.header_timeout, self.max_head, switch,
                 self.max_body)  # fmt: skip

    def _switch(self, conn: Connection, first: bytes, upgraded: Any) -> None:
        h2.serve(conn, self.app, self.requests.finished, self.limits, first, upgraded)

    def watch_readiness(self, ready: Callable[[], bool]) -> None:
        """The server says whether it is ready through ``ready`` (gRPC's health service
        answers with it)."""
        self.app.grpc.ready = ready

    def collect_metrics(self) -> Iterator[Any]:
        """This mode's Prometheus families, for the server's collector."""
        yield from self.requests.collect_metrics()
        yield from self.app.websocket.collect_metrics()
        yield from self.app.grpc.collect_metrics()
