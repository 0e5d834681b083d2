"""The http mode's settings, declared beside its code: ``--http-*`` and ``--ws-*``.

:class:`HttpSettings` is one of the groups :class:`~geventsrv.config.Config` is
made of (:mod:`geventsrv.settings` says how a setting is declared). The mode
table (:mod:`geventsrv.modes`) names it as the http mode's, so that a value
given to another mode is refused rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geventsrv.http.cors import Policy
from geventsrv.quicpath import BASE_SIZE, MAX_SIZE
from geventsrv.settings import ConfigError, check_integer, check_seconds, setting

#: The longest delay or interval a request may be allowed to ask for.
MAX_DELAY_LIMIT = 3600.0
#: The largest body or WebSocket message a setting may allow.
MAX_SIZE_LIMIT = 1 << 30
#: HTTP/2's own bounds on its settings (RFC 9113 6.5.2).
MAX_WINDOW = (1 << 31) - 1
MIN_FRAME_SIZE, MAX_FRAME_SIZE = 1 << 14, (1 << 24) - 1
#: HTTP/3's datagrams: QUIC's minimum, and the most aioquic can send.
MIN_DATAGRAM, MAX_DATAGRAM = BASE_SIZE, MAX_SIZE


@dataclass(frozen=True)
class HttpSettings:
    """What bounds the http mode: bodies, delays, request heads, WebSocket messages."""

    #: The most body bytes held for one request's reflection (413 past it).
    http_max_body: int = setting(
        1 << 20,
        "most body bytes one request may send to be reflected; past it, 413",
        kind="integer",
        group="http",
        metavar="BYTES",
    )
    #: The longest delay a request may ask for (``?delay=``, and trickled bodies in all).
    http_max_delay: float = setting(
        10.0,
        "longest a request may ask to wait with ?delay=, ?interval= and trickled bodies, "
        f"at most {MAX_DELAY_LIMIT:g}",
        kind="seconds",
        group="http",
        metavar="SECONDS",
    )
    #: The largest request head: HTTP/1.1's request line and headers, HTTP/2's header
    #: list as RFC 9113 counts it (SETTINGS_MAX_HEADER_LIST_SIZE). 431 past it.
    http_max_head: int = setting(
        16 * 1024,
        "largest request head in bytes: HTTP/1.1's request line and headers, HTTP/2's header "
        "list (SETTINGS_MAX_HEADER_LIST_SIZE); past it, 431",
        kind="integer",
        group="http",
        metavar="BYTES",
    )
    #: Seconds a request's head (request line and headers) may take to arrive once
    #: it has begun; past it, 408 and a close. Bounds a slowloris, whose trickle of
    #: bytes would keep the idle timeout from firing.
    http_header_timeout: float = setting(
        10.0,
        "seconds a request head may take to arrive once begun; past it, 408 and a close",
        kind="positive_seconds",
        group="http",
        metavar="SECONDS",
    )
    #: The WebSocket echo: the largest message (its fragments together, decompressed)
    #: echoed; past it, close 1009.
    ws_max_message: int = setting(
        1 << 20,
        "largest WebSocket message echoed, in bytes, its fragments together and decompressed; "
        "past it, close 1009",
        kind="integer",
        group="http",
        metavar="BYTES",
    )
    #: gRPC: the largest message a call may send or ask for, compressed or not;
    #: past it, RESOURCE_EXHAUSTED (gRPC's own servers take 4 MiB).
    grpc_max_message: int = setting(
        4 << 20,
        "largest gRPC message a call may send or ask for, in bytes, compressed or not; past "
        "it, RESOURCE_EXHAUSTED",
        kind="integer",
        group="http",
        metavar="BYTES",
    )

    #: Serve HTTP/1.1 alone: no h2 offered by ALPN, the HTTP/2 preface refused (505),
    #: ``Upgrade: h2c`` answered in HTTP/1.1.
    http1_only: bool = setting(
        False,
        "serve HTTP/1.1 alone: no HTTP/2 by ALPN over TLS, nor h2c in clear",
        kind="switch",
        group="http",
    )
    #: HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
    #: more are refused (REFUSED_STREAM).
    http2_max_streams: int = setting(
        100,
        "HTTP/2 streams one connection may have open at once; more are refused",
        kind="integer",
        group="http",
        metavar="N",
    )
    #: HTTP/2: each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE): what a client
    #: may send of a body before the server has read it. The connection's is four times
    #: it, at least 1 MiB: what one connection may hold unread.
    http2_window: int = setting(
        256 * 1024,
        "HTTP/2 receive window of each stream, in bytes (the connection's: four times it, at "
        "least 1 MiB)",
        kind="integer",
        group="http",
        metavar="BYTES",
    )
    #: Which origins CORS lets read the answers: every one (mirrored, as httpbin does), a
    #: list, or none (``off``: no CORS header, so a front's own handling shows).
    http_cors: str = setting(
        "*",
        "CORS: origins allowed ('*' mirrors any, a comma-separated list, or off)",
        kind="text",
        group="http",
        metavar="ORIGINS",
    )
    #: HTTP/2: the largest frame payload a client may send (SETTINGS_MAX_FRAME_SIZE).
    http2_max_frame: int = setting(
        MIN_FRAME_SIZE,
        "largest HTTP/2 frame payload a client may send, in bytes",
        kind="integer",
        group="http",
        metavar="BYTES",
    )

    #: HTTP/3 over QUIC on the UDP port of the same number, with the TLS certificate;
    #: HTTP/1.1 and HTTP/2 over TLS advertise it (``Alt-Svc``).
    http3: bool = setting(
        False,
        "also serve HTTP/3 over QUIC on the UDP port of the same number (needs --tls-cert; "
        "the extra geventsrv[http3])",
        kind="switch",
        group="http",
    )
    #: HTTP/3: a new connection begins only once its client has proved its address by
    #: echoing a Retry token (RFC 9000 8.1.2): a round trip more, and no state for a
    #: spoofed source.
    http3_retry: bool = setting(
        False,
        "HTTP/3: validate each new client's address with a Retry first (a round trip more; "
        "spoofed floods then cost no state)",
        kind="switch",
        group="http",
    )

    #: HTTP/3: the largest UDP payload sent, once a connection's path is probed to carry it
    #: (RFC 8899); the client's max_udp_payload_size and the route's MTU bound it too.
    http3_max_datagram: int = setting(
        MAX_DATAGRAM,
        "HTTP/3: largest datagram sent once the path is probed to carry it (the client's "
        "limit and the route's MTU bound it too; 1200 turns probing off)",
        kind="integer",
        group="http",
        metavar="BYTES",
    )

    #: HTTP/3: the port ``Alt-Svc`` names, where clients reach the UDP port through another
    #: (a Service, a balancer); 0 names the UDP port itself.
    http3_alt_svc_port: int = setting(
        0,
        "HTTP/3: the port Alt-Svc advertises, where clients reach the UDP port through "
        "another (a Kubernetes Service, a balancer; 0: the port itself)",
        kind="integer",
        group="http",
        metavar="PORT",
    )

    def check(self) -> None:
        """Raise :class:`~geventsrv.settings.ConfigError` for a value the mode cannot use.

        Called as ``HttpSettings.check(config)`` when the mode is http: each group of
        settings has its own ``check``, and the class names which one.
        """
        check_integer(self, "http_max_body", 0, MAX_SIZE_LIMIT)
        check_seconds(self, "http_max_delay", most=MAX_DELAY_LIMIT)
        check_seconds(self, "http_header_timeout", positive=True)
        check_integer(self, "ws_max_message", 1, MAX_SIZE_LIMIT)
        check_integer(self, "grpc_max_message", 16, MAX_SIZE_LIMIT)
        check_integer(self, "http_max_head", 1024, 1 << 20)
        check_integer(self, "http2_max_streams", 1, 1 << 16)
        check_integer(self, "http2_window", 1, MAX_WINDOW)
        check_integer(self, "http2_max_frame", MIN_FRAME_SIZE, MAX_FRAME_SIZE)
        check_integer(self, "http3_max_datagram", MIN_DATAGRAM, MAX_DATAGRAM)
        check_integer(self, "http3_alt_svc_port", 0, 65535)
        if (
            self.http3
            or self.http3_retry
            or self.http3_max_datagram != MAX_DATAGRAM
            or (self.http3_alt_svc_port)
        ):
            _check_http3(self)
        try:  # the policy's own parser says what is wrong
            Policy.parse(self.http_cors)
        except ValueError as exc:
            raise ConfigError("http_cors", str(exc)) from None


def _check_http3(settings: HttpSettings) -> None:
    config: Any = settings  # the whole configuration, of which these settings are a part
    if not settings.http3:
        given = [name for name in ("http3_retry", "http3_alt_svc_port") if getattr(settings, name)]
        raise ConfigError(given[0] if given else "http3_max_datagram", "is for HTTP/3: add --http3")
    # A listener of its own with TLS (``--listen PORT,tls-cert=...``) may serve it instead;
    # the spec's own parser judges the rest of it.
    if config.tls_cert is None and not any("tls-cert=" in spec for spec in config.listen):
        raise ConfigError("http3", "QUIC is always encrypted: give --tls-cert and --tls-key")
    if config.workers > 1:
        raise ConfigError("http3", "QUIC runs in one process; use --workers 1 with --http3")
    if not config.tcp:
        raise ConfigError("http3", "serves beside TCP; drop --udp-only")
