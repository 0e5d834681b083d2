"""Generated bodies: any slice of the endless pattern, from any offset, without a copy."""

from __future__ import annotations

import pytest

from geventsrv.http.patterns import LETTERS, PATTERN, generated


@pytest.mark.parametrize("pattern", [PATTERN, LETTERS], ids=["hex", "letters"])
@pytest.mark.parametrize(("start", "size"), [(0, 0), (0, 10), (5, 100_000), (65_530, 200_003)])
def test_any_slice_is_the_pattern_repeated(pattern, start, size):
    unit = pattern[:16] if pattern is PATTERN else pattern[:26]
    endless = unit * ((start + size) // len(unit) + 1)
    pieces = list(generated(start, size, pattern))
    assert b"".join(pieces) == endless[start : start + size]
    assert all(len(piece) <= len(pattern) for piece in pieces)
    assert all(piece.obj is pattern for piece in pieces)  # slices of one buffer, not copies
