"""``--mode http``: the handler the mode table names, and what it counts.

One :class:`HttpMode` per server: it holds the application (written once for
every HTTP version) and the request counts, and serves each connection with
the front of the version the connection speaks: HTTP/2 when TLS settled ``h2``
by ALPN, else HTTP/1.1 (:mod:`geventsrv.http.h1`), which hands the connection
to HTTP/2 (:mod:`geventsrv.http.h2`) when it opens with HTTP/2's preface or
asks to upgrade to h2c. With ``--http3`` it also makes the QUIC endpoint
(:meth:`HttpMode.open_quic`) whose connections speak HTTP/3
(:mod:`geventsrv.http.h3`) or the QUIC echo (:mod:`geventsrv.quicecho`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from geventsrv.http import h1, h2
from geventsrv.http.accounting import Requests
from geventsrv.http.app import HttpApp
from geventsrv.settings import ConfigError

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
        if config.http3:  # validated: some listener has TLS
            _require_aioquic()
        #: HTTP/3's QUIC endpoints (one per listener with TLS), as :meth:`open_quic` made them.
        self.quic: list[Any] = []
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
        announce = b""
        alt_svc = self.limits.alt_svc  # by the local port HTTP/3 is served beside
        if alt_svc and conn.tls is not None and (value := alt_svc.get(conn.sock.getsockname()[1])):
            announce = b"Alt-Svc: " + value + b"\r\n"
        h1.serve(conn, self.app, finished, self.header_timeout, self.max_head, switch,
                 self.max_body, announce)  # fmt: skip

    def _switch(self, conn: Connection, first: bytes, upgraded: Any) -> None:
        h2.serve(conn, self.app, self.requests.finished, self.limits, first, upgraded)

    def open_quic(self, sock: Any, slots: Any, access: Any, config: Config) -> Any:
        """The QUIC endpoint on ``sock`` (``--http3``): HTTP/3 by ALPN ``h3``, the echo by
        ``echo``; from now on answers over TLS advertise it (``Alt-Svc``). ``config``: the
        listener's settings (its certificate; the handler may serve several listeners)."""
        from geventsrv.http import h3
        from geventsrv.quic import QuicEndpoint, server_configuration
        from geventsrv.quicecho import ALPN, QuicEcho

        limits = self.limits

        def http3(session: Any) -> h3.H3Protocol:
            return h3.H3Protocol(session, self.app, self.requests.finished, config.http_max_head,
                                 config.idle_timeout)  # fmt: skip

        endpoint = QuicEndpoint(
            sock,
            server_configuration(config, ["h3", ALPN], limits.connection_window, limits.window),
            {"h3": http3, ALPN: QuicEcho},
            retry=config.http3_retry,
            max_per_client=config.per_client_limit,
            spare_loopback=config.per_client_limit_spares_loopback,
            max_datagram=config.http3_max_datagram,
            handshake_timeout=config.tls_handshake_timeout,
            window=limits.window,
            max_streams=limits.max_streams,
            slots=slots,
            access=access,
            ipv6_prefix=config.ipv6_client_prefix,
        )
        port = sock.getsockname()[1]
        # Answers over TLS on this port advertise it: at the port clients reach it by.
        limits.alt_svc[port] = b'h3=":%d"; ma=86400' % (config.http3_alt_svc_port or port)
        self.quic.append(endpoint)
        return endpoint

    def watch_readiness(self, ready: Callable[[], bool]) -> None:
        """The server says whether it is ready through ``ready`` (gRPC's health service
        answers with it)."""
        self.app.grpc.ready = ready

    def collect_metrics(self) -> Iterator[Any]:
        """This mode's Prometheus families, for the server's collector."""
        yield from self.requests.collect_metrics()
        yield from self.app.websocket.collect_metrics()
        yield from self.app.grpc.collect_metrics()
        if self.quic:
            from geventsrv.quic import collect_metrics

            yield from collect_metrics(self.quic)


def _require_aioquic() -> None:
    """HTTP/3's library is an extra: without it, ``--http3`` is refused in one line."""
    try:
        import aioquic  # noqa: F401
    except ImportError:
        raise ConfigError(
            "http3", "needs aioquic (Python 3.11 or newer): pip install 'geventsrv[http3]'"
        ) from None
