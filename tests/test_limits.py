"""Access lists, per-client counts and token buckets, decided on addresses alone.

The same rules against a real server, with clients bound to distinct
loopback addresses, are in test_server_hostile.py.
"""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geventsrv.limits import (
    AccessList,
    ClientCounts,
    Gate,
    TokenBuckets,
    client_ip,
    client_key,
    parse_rate,
)

#: ncat's semantics, every combination: (allow, deny, address, served?)
ACCESS_TABLE = [
    ((), (), "192.0.2.1", True),
    (("192.0.2.0/24",), (), "192.0.2.1", True),
    (("192.0.2.0/24",), (), "198.51.100.1", False),
    ((), ("192.0.2.0/24",), "192.0.2.1", False),
    ((), ("192.0.2.0/24",), "198.51.100.1", True),
    (("192.0.2.0/24",), ("192.0.2.128/25",), "192.0.2.1", True),
    (("192.0.2.0/24",), ("192.0.2.128/25",), "192.0.2.200", False),  # deny wins
    (("192.0.2.0/24",), ("192.0.2.0/24",), "192.0.2.1", False),
    (("2001:db8::/32",), (), "2001:db8::1", True),
    (("2001:db8::/32",), (), "2001:db9::1", False),
    ((), ("2001:db8::/32",), "2001:db8:1::1", False),
    (("192.0.2.0/24",), (), "::ffff:192.0.2.9", True),  # dual-stack IPv4 client
    ((), ("192.0.2.0/24",), "::ffff:192.0.2.9", False),
    (("::1",), (), "127.0.0.1", False),
    (("127.0.0.0/8", "::1"), (), "::1", True),
]


@pytest.mark.parametrize(("allow", "deny", "address", "served"), ACCESS_TABLE)
def test_access_list(allow, deny, address, served):
    assert AccessList(allow, deny).permits(client_ip(address)) is served


def test_ipv6_clients_count_per_64_and_ipv4_per_address():
    assert client_key(client_ip("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_key(client_ip("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert client_key(client_ip("2001:db8:1:3::1")) == "2001:db8:1:3::/64"
    assert client_key(client_ip("2001:db8:1:2::1"), ipv6_prefix=48) == "2001:db8:1::/48"
    assert client_key(client_ip("192.0.2.1")) == "192.0.2.1"
    assert client_key(client_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert client_key(client_ip("fe80::1%lo")) == "fe80::/64"


def test_client_counts():
    counts = ClientCounts(limit=2)
    assert counts.take("a") and counts.take("a") and not counts.take("a")
    assert counts.take("b")
    counts.give_back("a")
    assert counts.take("a")
    for _ in range(2):
        counts.give_back("a")
    assert "a" not in counts.open  # no entry left behind for a client gone
    assert ClientCounts(limit=0).take("x")  # 0: no limit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_rate_and_burst():
    clock = FakeClock()
    buckets = TokenBuckets(rate=10, burst=5, clock=clock)
    assert [buckets.allow("a") for _ in range(6)] == [True] * 5 + [False]
    assert buckets.allow("b")  # each source has its own
    clock.now += 0.1  # one token back
    assert buckets.allow("a") and not buckets.allow("a")
    clock.now += 10  # refills to the burst, no more
    assert sum(buckets.allow("a") for _ in range(10)) == 5


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=3000))
def test_a_flood_of_sources_keeps_the_table_bounded(sources):
    buckets = TokenBuckets(rate=1, burst=1, max_tracked=100, clock=FakeClock())
    for source in sources:
        buckets.allow(str(source))
    assert len(buckets) <= 100


@given(st.integers(1, 50), st.floats(0.1, 100))
def test_over_any_window_a_source_gets_at_most_burst_plus_rate_times_time(burst, rate):
    clock = FakeClock()
    buckets = TokenBuckets(rate=rate, burst=burst, clock=clock)
    allowed = 0
    for step in itertools.count():
        if step == 400:
            break
        clock.now = step * 0.01
        allowed += buckets.allow("flood")
    assert allowed <= burst + rate * clock.now + 1e-9


@pytest.mark.parametrize(
    ("text", "expected"), [("100", (100.0, 200.0)), ("5:7", (5.0, 7.0)), ("0.5", (0.5, 1.0))]
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["fast", "-1", "5:0", "5:x", "inf"])
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_gate_order_and_release():
    clock = FakeClock()
    gate = Gate(AccessList(deny=("192.0.2.66/32",)), per_client_limit=1, accept_rate=(1, 2))
    gate.accept_rate.clock = clock  # type: ignore[union-attr]
    assert gate.admit("192.0.2.66") == ("denied", None)
    assert gate.admit("192.0.2.1") == (None, "192.0.2.1")
    assert gate.admit("192.0.2.1") == ("limit", None)  # second token, but one open already
    assert gate.admit("192.0.2.1") == ("rate", None)  # burst of 2 spent
    gate.release("192.0.2.1")
    clock.now += 1
    assert gate.admit("192.0.2.1") == (None, "192.0.2.1")
    assert gate.admit("/run/x.sock") == (None, None)  # not an IP: not judged
    assert isinstance(client_ip("::1"), ipaddress.IPv6Address)
