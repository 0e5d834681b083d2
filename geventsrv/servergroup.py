"""The servers of one process: the one ``--host``/``--port`` describe and each ``--listen``.

:class:`ServerGroup` runs them as one server: one limit on connections
(``--max-conns`` counts every listener's), one per-client gate, one set of
totals and metrics, one readiness, one drain with one deadline. Listeners of
the same mode share its handler, so the HTTP mode's request counters and a
chat room span them. With no ``--listen`` the group is a single
:class:`~geventsrv.server.EchoServer`, and behaves exactly as it does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import gevent

from geventsrv import modes, procstats
from geventsrv.addresses import format_address
from geventsrv.config import Config, ConfigError
from geventsrv.connection import Handler
from geventsrv.listen import Sockets
from geventsrv.listeners import listener_configs
from geventsrv.server import EchoServer
from geventsrv.stats import ServerStats
from geventsrv.udp import DatagramEcho

log = logging.getLogger("geventsrv.server")


class ServerGroup:
    """Every listener of ``config``; the first (``servers[0]``) is ``config``'s own.

    Raises :class:`~geventsrv.config.ConfigError` for a bad value or TLS file,
    naming ``--listen`` when a listener's is at fault.
    """

    def __init__(self, config: Config, sockets: Sockets | None = None) -> None:
        config = config.validate()
        first = EchoServer(config, sockets=sockets)
        handlers: dict[str, Handler] = {config.mode: first.handler}
        self.servers = [first]
        for spec, listener in zip(config.listen, listener_configs(config), strict=True):
            if listener.mode not in handlers:
                handlers[listener.mode] = modes.get(listener.mode).make_handler(listener)
            try:
                server = EchoServer(listener, handlers[listener.mode], shares=first)
            except ConfigError as exc:  # a TLS file that cannot be read
                raise ConfigError("listen", f"{spec!r}: {exc.problem}") from None
            self.servers.append(server)
        self.handlers = list(handlers.values())

    @property
    def config(self) -> Config:
        """The settings of the process (the first listener's, with every ``--listen``)."""
        return self.servers[0].config

    @property
    def stats(self) -> ServerStats:
        """Totals over every listener."""
        return self.servers[0].stats

    @property
    def address(self) -> tuple[str, int]:
        """The first listener's ``(host, port)``."""
        return self.servers[0].address

    @property
    def ready(self) -> bool:
        return all(server.ready for server in self.servers)

    @property
    def connection_count(self) -> int:
        return sum(server.connection_count for server in self.servers)

    @property
    def datagram_services(self) -> Iterator[DatagramEcho]:
        """The UDP echo of every listener that serves one."""
        return (server.udp for server in self.servers if server.udp is not None)

    def open_bytes(self) -> tuple[int, int]:
        counts = [server.open_bytes() for server in self.servers]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def start(self) -> ServerGroup:
        """Bind every listener, then start them: one that cannot bind raises its
        :class:`~geventsrv.listen.ListenError` with nothing started or left open."""
        try:
            for server in self.servers:
                server.bind()
        except BaseException:
            for server in self.servers:
                server.close_sockets()
            raise
        for server in self.servers:
            server.start()
            if len(self.servers) > 1:
                server.log_label = f" {format_address(*server.address)}"
        return self

    def serve_forever(self) -> None:
        self.start()
        for server in self.servers:
            server.serve_forever()

    def announce_stop(self) -> None:
        for server in self.servers:
            server.announce_stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every listener at once; open connections share one drain deadline.

        Safe to call again with a shorter timeout, as :meth:`EchoServer.stop` is.
        The first listener stops last, so its closing line counts every listener.
        """
        if timeout is None:
            timeout = self.config.drain_timeout
        deadline = time.monotonic() + timeout
        first, *others = self.servers
        first.stop_accepting()
        gevent.joinall([gevent.spawn(server.stop, timeout) for server in others])
        first.stop(max(0.0, deadline - time.monotonic()))

    def log_status(self) -> None:
        """One status line for the process, every listener's connections counted."""
        status = procstats.snapshot(self.connection_count, self.stats.accepted)
        log.info("%s", procstats.format_status(status))
