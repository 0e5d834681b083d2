"""Cookies (RFC 6265): the request's, parsed for the reflection, and ``Set-Cookie`` asked for.

The ``cookie`` control sets one (repeatable): ``name=value`` and any of its
attributes (``Domain``, ``Path``, ``Max-Age``, ``Expires``, ``SameSite``,
``Secure``, ``HttpOnly``, ``Partitioned``), so a test sees whether a front
rewrites a cookie's domain or path (nginx's ``proxy_cookie_domain``) or drops
its flags.
"""

from __future__ import annotations

#: Attributes a ``Set-Cookie`` asked for may carry (lower-cased).
ATTRIBUTES = frozenset(
    ("domain", "path", "max-age", "expires", "samesite", "secure", "httponly", "partitioned")
)
#: The most cookies shown of one request (a browser sends far fewer).
MAX_COOKIES = 200


def parse_cookie_header(value: bytes) -> dict[str, str]:
    """``Cookie: a=1; b=2`` as ``{"a": "1", "b": "2"}`` (a name sent twice: the first wins,
    as servers usually read it). Lenient: a pair without ``=`` is skipped."""
    cookies: dict[str, str] = {}
    for pair in value.decode("latin-1").split(";")[:MAX_COOKIES]:
        name, sep, text = pair.strip().partition("=")
        if sep and name and name not in cookies:
            text = text.strip()
            if len(text) > 1 and text[0] == text[-1] == '"':
                text = text[1:-1]
            cookies[name] = text
    return cookies


def request_cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """Every ``Cookie`` header's pairs (HTTP/2 may split them over several fields), or
    ``None`` when none came."""
    found = [value for name, value in headers if len(name) == 6 and name.lower() == b"cookie"]
    if not found:
        return None
    return parse_cookie_header(b"; ".join(found))


def set_cookie(text: str) -> bytes:
    """A ``Set-Cookie`` value from the ``cookie`` control; ``ValueError`` saying why it cannot
    be sent."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError("a cookie may not hold CR, LF or NUL")
    first, *attributes = text.split(";")
    name, sep, _ = first.strip().partition("=")
    if not sep or not name.strip() or any(c in name for c in ' \t",;\\()<>@[]?={}/'):
        raise ValueError(f"cookie must start with name=value, got {text!r}")
    for attribute in attributes:
        key = attribute.strip().partition("=")[0].strip().lower()
        if key and key not in ATTRIBUTES:
            raise ValueError(f"unknown cookie attribute {key!r}")
    return text.strip().encode("latin-1", "replace")


def expired(name: str) -> bytes:
    """A ``Set-Cookie`` that deletes ``name``."""
    return f"{name}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/".encode(
        "latin-1", "replace"
    )
