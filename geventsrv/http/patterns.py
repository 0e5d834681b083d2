"""Generated bodies: a short unit repeated, sent as slices of one buffer, never copied.

``?bytes=N`` sends :data:`PATTERN` (hex digits, so a reader sees offsets at a
glance); httpbin's ``/range/N`` sends :data:`LETTERS`, the alphabet, as httpbin
does. Any byte of either is known from its position, which is what lets a
range, a trickled piece or a compressed stream start anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

#: What ``?bytes=N`` sends: 16 hex digits, repeated (64 KiB).
PATTERN = b"0123456789abcdef" * 4096
#: What httpbin's ``/range/N`` sends: the alphabet, repeated (almost 64 KiB).
LETTERS = b"abcdefghijklmnopqrstuvwxyz" * 2520
#: Each pattern's period, by its length.
PERIODS = {len(PATTERN): 16, len(LETTERS): 26}


def generated(start: int, size: int, pattern: bytes = PATTERN) -> Iterator[memoryview]:
    """``size`` bytes of ``pattern`` (:data:`PATTERN` or :data:`LETTERS`) from position
    ``start``, in slices of at most 64 KiB."""
    view = memoryview(pattern)
    period = PERIODS[len(pattern)]
    position, end = start, start + size
    while position < end:
        offset = position % period
        length = min(end - position, len(pattern) - offset)
        yield view[offset : offset + length]
        position += length
