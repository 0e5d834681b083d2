"""The http mode's settings, declared beside its code: ``--http-*`` and ``--ws-*``.

:class:`HttpSettings` is one of the groups :class:`~geventsrv.config.Config` is
made of (:mod:`geventsrv.settings` says how a setting is declared). The mode
table (:mod:`geventsrv.modes`) names it as the http mode's, so that a value
given to another mode is refused rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from geventsrv.settings import check_integer, check_seconds, setting

#: The longest delay or interval a request may be allowed to ask for.
MAX_DELAY_LIMIT = 3600.0
#: The largest body or WebSocket message a setting may allow.
MAX_SIZE_LIMIT = 1 << 30


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

    def check(self) -> None:
        """Raise :class:`~geventsrv.settings.ConfigError` for a value the mode cannot use.

        Called as ``HttpSettings.check(config)`` when the mode is http: each group of
        settings has its own ``check``, and the class names which one.
        """
        check_integer(self, "http_max_body", 0, MAX_SIZE_LIMIT)
        check_seconds(self, "http_max_delay", most=MAX_DELAY_LIMIT)
        check_seconds(self, "http_header_timeout", positive=True)
        check_integer(self, "ws_max_message", 1, MAX_SIZE_LIMIT)
