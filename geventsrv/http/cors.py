"""CORS (the Fetch standard's): the headers a browser needs before it lets a page read a
cross-origin answer, and the answer to its preflight.

By default the server allows every origin as httpbin does: the requesting
``Origin`` is mirrored (with ``Vary: Origin``, so a cache keeps one copy per
origin) and credentials are allowed; a preflight (``OPTIONS`` with ``Origin``
and ``Access-Control-Request-Method``) is answered ``204`` with the method and
headers it asked for, allowed for an hour. The ``cors`` control (and
``--http-cors``) narrows that to a list of origins, or turns it ``off``: then
no CORS header is sent and a preflight is reflected like any request, so a
front's own CORS handling is what the browser sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geventsrv.http.exchange import Header, Request

#: How long a browser may keep a preflight's answer.
PREFLIGHT_MAX_AGE = b"3600"
#: What a preflight is told when it names no method (never: the browser always does).
METHODS = b"GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
VARY_ORIGIN = (b"Vary", b"Origin")


class Policy:
    """Which origins may read the answers: all of them (``"*"``), a list, or none (``off``)."""

    __slots__ = ("origins",)

    def __init__(self, origins: frozenset[bytes] | None) -> None:
        #: ``None``: every origin; empty: CORS off.
        self.origins = origins

    @classmethod
    def parse(cls, text: str) -> Policy:
        """``*`` (every origin), ``off``, or origins separated by commas or spaces.
        Raises ``ValueError`` on an origin that is not ``scheme://host[:port]``."""
        words = text.replace(",", " ").split()
        if words == ["*"] or not words:
            return ALLOW_ALL
        if words == ["off"]:
            return OFF
        for word in words:
            scheme, sep, rest = word.partition("://")
            if not sep or not scheme or not rest or "/" in rest:
                raise ValueError(f"an origin is scheme://host[:port], got {word!r}")
        return cls(frozenset(word.encode() for word in words))

    @property
    def off(self) -> bool:
        return self.origins is not None and not self.origins

    def allows(self, origin: bytes) -> bool:
        return self.origins is None or origin in self.origins


ALLOW_ALL = Policy(None)
OFF = Policy(frozenset())


def is_preflight(request: Request) -> bool:
    """Whether a request is a CORS preflight (an ``OPTIONS`` naming the method to come)."""
    return (
        request.method == b"OPTIONS"
        and request.origin is not None
        and request.field(b"access-control-request-method") is not None
    )


def simple_headers(policy: Policy, origin: bytes) -> list[Header]:
    """The headers an ordinary response carries for a request from ``origin``."""
    if not policy.allows(origin):
        return [VARY_ORIGIN]
    return [
        (b"Access-Control-Allow-Origin", origin),
        (b"Access-Control-Allow-Credentials", b"true"),
        VARY_ORIGIN,
    ]


def preflight_headers(policy: Policy, request: Request) -> list[Header]:
    """A preflight's answer: the method and headers it asked for, allowed (or nothing, when
    its origin is not allowed, which the browser takes as a refusal)."""
    origin = request.origin or b""
    if not policy.allows(origin):
        return [VARY_ORIGIN]
    method = request.field(b"access-control-request-method") or METHODS
    headers = [
        (b"Access-Control-Allow-Origin", origin),
        (b"Access-Control-Allow-Credentials", b"true"),
        (b"Access-Control-Allow-Methods", method),
        (b"Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
        VARY_ORIGIN,
    ]
    asked = request.field(b"access-control-request-headers")
    if asked:
        headers.insert(3, (b"Access-Control-Allow-Headers", asked))
    return headers
