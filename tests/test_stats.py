"""The server's totals: the duration histogram exports Prometheus's cumulative buckets."""

from __future__ import annotations

from geventsrv.stats import CLOSE_REASONS, DURATION_BUCKETS, Durations, ServerStats


def test_durations_bucket_by_upper_bound_inclusive():
    durations = Durations()
    for seconds in (0.0, 0.001, 0.0011, 2.0, 7200.0):
        durations.observe(seconds)
    buckets = dict(durations.cumulative())
    assert buckets["0.001"] == 2  # le is "less than or equal"
    assert buckets["0.005"] == 3
    assert buckets["5.0"] == 4
    assert buckets["3600.0"] == 4 and buckets["+Inf"] == 5
    assert durations.total == 0.0 + 0.001 + 0.0011 + 2.0 + 7200.0
    assert len(buckets) == len(DURATION_BUCKETS) + 1


def test_every_close_reason_starts_at_zero():
    assert ServerStats().closed == dict.fromkeys(CLOSE_REASONS, 0)


def test_operations_page_explains_every_close_reason():
    from support import ROOT

    from geventsrv.stats import CLOSE_REASONS

    page = (ROOT / "docs" / "operations.md").read_text()
    row = next(line for line in page.splitlines() if "geventsrv_connections_closed_total" in line)
    assert all(f"`{reason}`" in row for reason in CLOSE_REASONS), row
