"""Conditional requests (RFC 9110 13): what a response with validators answers instead.

A response carries validators when the request asked for them (the ``etag``
and ``last-modified`` controls, or httpbin's ``/etag/`` and ``/cache``): then
the request's preconditions are judged in the RFC's order, and a cache that
revalidates gets ``304 Not Modified``, a client whose ``If-Match`` or
``If-Unmodified-Since`` fails gets ``412 Precondition Failed``. A response
without validators ignores the preconditions, as a resource without them
would have no way to judge them.
"""

from __future__ import annotations

from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geventsrv.http.exchange import Request

#: Methods a ``304`` answers (RFC 9110 13.2.2 step 3); any other gets 412 where 304 would do.
SAFE_READS = (b"GET", b"HEAD")


def quoted_etag(text: str) -> bytes:
    """An entity tag as sent: ``abc`` becomes ``"abc"``; ``"abc"`` and ``W/"abc"`` stay."""
    raw = text.strip().encode("latin-1", "replace")
    if raw.startswith((b'"', b'W/"')) and raw.endswith(b'"') and len(raw) > 1:
        return raw
    return b'"' + raw.replace(b'"', b"") + b'"'


def http_date_of(seconds: float) -> bytes:
    """``seconds`` since the epoch as an HTTP date (``Last-Modified``)."""
    return formatdate(int(seconds), usegmt=True).encode()


def parse_http_date(value: bytes) -> float | None:
    """An HTTP date as seconds since the epoch; ``None`` when it is not one (which the RFC
    says to ignore)."""
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def tags(value: bytes) -> list[bytes]:
    """The entity tags of an ``If-Match``/``If-None-Match`` list (``*`` kept as is)."""
    found = []
    for part in value.split(b","):
        part = part.strip()
        if part:
            found.append(part)
    return found


def opaque(tag: bytes) -> bytes:
    """An entity tag without its weakness mark: what weak comparison compares."""
    return tag[2:] if tag.startswith(b"W/") else tag


def strong_match(listed: list[bytes], etag: bytes | None) -> bool:
    """``If-Match``'s comparison: ``*`` or the same strong tag (a weak tag never matches)."""
    if etag is None:
        return False
    if b"*" in listed:
        return True
    return not etag.startswith(b"W/") and etag in listed


def weak_match(listed: list[bytes], etag: bytes | None) -> bool:
    """``If-None-Match``'s comparison: ``*`` or the same opaque tag, weak or strong."""
    if etag is None:
        return False
    if b"*" in listed:
        return True
    mine = opaque(etag)
    return any(opaque(tag) == mine for tag in listed)


def precondition(request: Request, etag: bytes | None, modified: float | None) -> int | None:
    """The status the preconditions ask for (304 or 412), or ``None`` to answer as usual.

    RFC 9110 13.2.2's order: ``If-Match``, else ``If-Unmodified-Since``; then
    ``If-None-Match``, else ``If-Modified-Since`` (for GET and HEAD only).
    """
    if_match = request.field(b"if-match")
    if if_match is not None:
        if not strong_match(tags(if_match), etag):
            return 412
    elif modified is not None:
        since = request.field(b"if-unmodified-since")
        date = parse_http_date(since) if since is not None else None
        if date is not None and int(modified) > date:
            return 412
    if_none_match = request.field(b"if-none-match")
    if if_none_match is not None:
        if weak_match(tags(if_none_match), etag):
            return 304 if request.method in SAFE_READS else 412
    elif modified is not None and request.method in SAFE_READS:
        since = request.field(b"if-modified-since")
        date = parse_http_date(since) if since is not None else None
        if date is not None and int(modified) <= date:
            return 304
    return None


def range_still_valid(if_range: bytes | None, etag: bytes | None, modified: float | None) -> bool:
    """Whether a ``Range`` may be served under ``If-Range`` (RFC 9110 13.1.5): no
    ``If-Range``, or its strong tag or exact date names this representation."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith((b'"', b'W/"')):
        return etag is not None and not etag.startswith(b"W/") and value == etag
    date = parse_http_date(value)
    return date is not None and modified is not None and int(modified) == date
