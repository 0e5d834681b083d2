"""Byte ranges (RFC 9110 14): which parts of a generated body a ``Range`` asks for.

Served on the bodies the server generates (``?bytes=N``, httpbin's ``/range/N``),
whose every byte is known without holding it: one range is a ``206`` with
``Content-Range``, several are a ``multipart/byteranges`` body, none that can be
satisfied is a ``416``. Bounded, since a ``Range`` is the client's: at most
:data:`MAX_RANGES` ranges, and overlapping or adjacent ones are merged first,
so a response is never longer than the whole body plus the parts' headers.
A ``Range`` that is not ``bytes=...`` or does not parse is ignored, as the
RFC says: the whole body is sent.
"""

from __future__ import annotations

import secrets

#: More ranges than this and the ``Range`` is ignored (the whole body is sent).
MAX_RANGES = 32
Span = tuple[int, int]


class Unsatisfiable(Exception):
    """No range of the request falls inside the body: answered ``416``."""


def parse_ranges(value: bytes, size: int) -> list[Span] | None:
    """The ``(first, last)`` byte positions asked for, sorted and merged; ``None`` when the
    ``Range`` is to be ignored. Raises :class:`Unsatisfiable` when none is inside ``size``."""
    unit, sep, specs = value.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes":
        return None
    parts = [part.strip() for part in specs.split(b",") if part.strip()]
    if not parts or len(parts) > MAX_RANGES:
        return None
    spans: list[Span] = []
    for part in parts:
        first_text, dash, last_text = part.partition(b"-")
        if not dash or not (first_text or last_text):
            return None
        if not all(text.isdigit() for text in (first_text, last_text) if text):
            return None
        if not first_text:  # a suffix: the last N bytes
            suffix = int(last_text)
            if suffix and size:
                spans.append((max(0, size - suffix), size - 1))
            continue
        first = int(first_text)
        last = int(last_text) if last_text else first
        if last < first:
            return None
        if first < size:
            spans.append((first, size - 1 if not last_text else min(last, size - 1)))
    if not spans:
        raise Unsatisfiable
    return merged(spans)


def merged(spans: list[Span]) -> list[Span]:
    """``spans`` sorted, overlapping and adjacent ones joined (RFC 9110 14.3 lets a server
    coalesce them, and it keeps the answer bounded by the body)."""
    result: list[Span] = []
    for first, last in sorted(spans):
        if result and first <= result[-1][1] + 1:
            result[-1] = (result[-1][0], max(result[-1][1], last))
        else:
            result.append((first, last))
    return result


def content_range(span: Span, size: int) -> bytes:
    """``Content-Range``'s value for one span of a body of ``size`` bytes."""
    return b"bytes %d-%d/%d" % (span[0], span[1], size)


def unsatisfied_range(size: int) -> bytes:
    """``Content-Range``'s value on a 416: the body's size (RFC 9110 14.4)."""
    return b"bytes */%d" % size


class Multipart:
    """A ``multipart/byteranges`` body (RFC 9110 14.6): each span's head, then its bytes."""

    def __init__(self, spans: list[Span], size: int, content_type: bytes) -> None:
        self.boundary = secrets.token_hex(12).encode()
        self.spans = spans
        self.heads = [
            b"\r\n--%s\r\nContent-Type: %s\r\nContent-Range: %s\r\n\r\n"
            % (self.boundary, content_type, content_range(span, size))
            for span in spans
        ]
        self.closing = b"\r\n--%s--\r\n" % self.boundary

    @property
    def content_type(self) -> bytes:
        return b"multipart/byteranges; boundary=" + self.boundary

    @property
    def length(self) -> int:
        """The whole body's length, for ``Content-Length``."""
        data = sum(last - first + 1 for first, last in self.spans)
        return sum(map(len, self.heads)) + data + len(self.closing)
