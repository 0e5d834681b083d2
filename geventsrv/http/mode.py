"""``--mode http``: the handler the mode table names, and what it counts.

One :class:`HttpMode` per server: it holds the application (written once for
every HTTP version) and the request counts, and serves each connection with
the front of the version the connection speaks: HTTP/1.1
(:mod:`geventsrv.http.h1`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from geventsrv.http import h1
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

    def __call__(self, conn: Connection) -> None:
        h1.serve(conn, self.app, self.requests.finished, self.header_timeout)

    def collect_metrics(self) -> Iterator[Any]:
        """This mode's Prometheus families, for the server's collector."""
        yield from self.requests.collect_metrics()
        yield from self.app.websocket.collect_metrics()
