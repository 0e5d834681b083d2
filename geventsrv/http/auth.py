"""Credentials: what ``Authorization`` carried, shown, and a required scheme, judged.

The reflection shows the scheme, a Basic user (never its password), and a
bearer token's JWT header and claims, decoded and **not verified**: the point
is to see what a gateway forwarded or minted, not to trust it. The ``auth``
control (and httpbin's ``/basic-auth/``, ``/bearer``) requires credentials:
``401`` with ``WWW-Authenticate`` when they are missing or of another scheme,
``403`` when they are wrong. Credentials are never written to a log.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

REALM = b'realm="geventsrv"'
#: The longest ``Authorization`` value looked into for the reflection.
MAX_SHOWN = 8192


@dataclass(frozen=True, slots=True)
class Requirement:
    """The credentials a request must bring: ``scheme`` ``basic`` or ``bearer``; for Basic a
    ``user`` and ``password``; for Bearer a ``token`` (``None``: any token will do)."""

    scheme: str
    user: str = ""
    password: str = ""
    token: str | None = None

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """``basic:USER:PASSWORD``, ``bearer`` or ``bearer:TOKEN``; ``ValueError`` otherwise."""
        scheme, _, rest = text.partition(":")
        scheme = scheme.strip().lower()
        if scheme == "basic":
            user, sep, password = rest.partition(":")
            if not sep or not user:
                raise ValueError("auth=basic takes basic:USER:PASSWORD")
            return cls("basic", user, password)
        if scheme == "bearer":
            return cls("bearer", token=rest or None)
        raise ValueError(f"auth must be basic:USER:PASSWORD, bearer or bearer:TOKEN, got {text!r}")

    def challenge(self) -> bytes:
        """``WWW-Authenticate``'s value for this requirement."""
        return (b"Basic " if self.scheme == "basic" else b"Bearer ") + REALM

    def judge(self, authorization: bytes | None) -> int | None:
        """``None`` when ``authorization`` satisfies this requirement; else 401 (missing, or
        another scheme) or 403 (wrong)."""
        scheme, credentials = split(authorization)
        if scheme != self.scheme:
            return 401
        if self.scheme == "bearer":
            return None if self.token is None or credentials == self.token else 403
        user, password = basic_pair(credentials)
        return None if (user, password) == (self.user, self.password) else 403


def split(authorization: bytes | None) -> tuple[str, str]:
    """``(scheme lower-cased, credentials)`` of an ``Authorization`` value."""
    if not authorization:
        return "", ""
    scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
    return scheme.lower(), credentials.strip()


def basic_pair(credentials: str) -> tuple[str | None, str | None]:
    """A Basic credential's user and password; ``(None, None)`` when it is not one."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def describe(authorization: bytes) -> dict[str, object]:
    """What the reflection says of an ``Authorization`` value: ``scheme``, the Basic
    ``user``, a JWT's ``jwt`` {``header``, ``claims``, ``verified``: false}."""
    scheme, credentials = split(authorization[:MAX_SHOWN])
    shown: dict[str, object] = {"scheme": scheme or None, "user": None, "jwt": None}
    if scheme == "basic":
        shown["user"] = basic_pair(credentials)[0]
    elif scheme == "bearer":
        shown["jwt"] = decode_jwt(credentials)
    return shown


def decode_jwt(token: str) -> dict[str, object] | None:
    """A JWT's header and claims, decoded and never verified; ``None`` when ``token`` is not
    three base64url parts whose first two are JSON objects."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    decoded = []
    for part in parts[:2]:
        try:
            value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        decoded.append(value)
    return {"header": decoded[0], "claims": decoded[1], "verified": False}
