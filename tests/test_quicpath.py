"""The path's datagram size: the search's steps, the kernel's route MTU, and the server probing
real paths with aioquic's client over loopback (whose route carries 65,507 bytes of UDP).

A path narrower than its route says (a tunnel, a link with a smaller MTU further on) is
played by the client itself, which drops every datagram larger than the path would carry:
the one thing here that is not a real path, since loopback's MTU cannot shrink for one
client without changing it for the whole machine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from geventsrv.quicpath import (
    ATTEMPTS,
    BASE_SIZE,
    MAX_PROBES,
    MAX_SIZE,
    RESOLUTION,
    PathSearch,
    route_limit,
)

# -- the search -----------------------------------------------------------------


def search_against(search: PathSearch, carried: int) -> list[int]:
    """Run the search against a path that carries ``carried`` bytes; the sizes probed."""
    probed = []
    now = 0.0
    while (size := search.next_probe(now)) is not None:
        probed.append(size)
        if size <= carried:
            search.acknowledged(size)
        else:
            search.lost(size)
        now += 0.01
    return probed


def test_a_path_that_carries_the_ceiling_costs_one_probe():
    search = PathSearch(9000)
    assert search_against(search, 9000) == [9000]
    assert search.size == 9000 and search.done


@pytest.mark.parametrize("carried", [1200, 1280, 1452, 4000, 8952, 16382])
def test_the_search_ends_within_its_resolution_below_what_the_path_carries(carried):
    search = PathSearch(MAX_SIZE)
    probed = search_against(search, carried)
    assert carried - RESOLUTION <= search.size <= carried
    assert len(probed) <= MAX_PROBES and search.done
    too_large = [size for size in probed if size > carried]
    assert all(too_large.count(size) == ATTEMPTS for size in too_large)
    assert search.next_probe(100.0) is None  # done stays done


def test_a_probe_lost_once_is_tried_again_since_congestion_loses_datagrams_too():
    search = PathSearch(9000)
    assert search.next_probe(0.0) == 9000
    search.lost(9000)
    assert search.next_probe(0.1) == 9000
    search.acknowledged(9000)
    assert search.size == 9000 and search.done


def test_a_probe_unanswered_in_time_counts_as_lost_and_a_late_answer_still_counts():
    search = PathSearch(9000)
    assert search.next_probe(0.0) == 9000
    assert search.next_probe(0.1) is None  # under way
    assert search.next_probe(1.0) == 9000  # timed out: once more
    third = search.next_probe(2.0)  # timed out twice: halfway now
    assert third == (BASE_SIZE + 9000) // 2
    search.acknowledged(9000)  # an acknowledgement came after all: proof
    assert search.size == 9000
    search.lost(third)  # smaller than what is proved: changes nothing
    assert search.size == 9000 and search.done


def test_a_ceiling_at_the_base_searches_nothing():
    search = PathSearch(BASE_SIZE)
    assert search.done and search.next_probe(0.0) is None and search.size == BASE_SIZE


# -- the route --------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the route's MTU is Linux's")
def test_the_route_limit_is_the_kernels_mtu_less_the_headers():
    mtu = int(Path("/sys/class/net/lo/mtu").read_text())
    # An IPv4 packet is 65,535 bytes at most, whatever the interface's MTU.
    assert route_limit("127.0.0.1") == min(mtu, 65535) - 28
    assert route_limit("::ffff:127.0.0.1") == min(mtu, 65535) - 28
    assert route_limit("::1") in (mtu - 48, None)  # None where IPv6 is off
    assert route_limit("not an address") is None


# -- the server, over real paths ---------------------------------------------------------


def http3_server(start_server, certs, *flags: str):
    return start_server("--mode", "http", "--tls-cert", certs.server, "--http3", *flags)


def narrow_path(carries: int = 65507) -> Any:
    """aioquic's client behind a path that carries at most ``carries`` bytes of UDP: larger
    datagrams are dropped before aioquic sees them. Its ``largest`` is the largest it was
    sent."""
    h3client = pytest.importorskip("h3client")  # aioquic, the client

    class NarrowPath(h3client.H3Client):  # type: ignore[name-defined]
        largest = 0

        def datagram_received(self, data, addr):
            type(self).largest = max(type(self).largest, len(data))
            if len(data) <= carries:
                super().datagram_received(data, addr)

    return NarrowPath


def settle(server, certs, protocol, want) -> tuple[int, int]:
    """Download on one connection, then ask for the reflection until its datagram size
    satisfies ``want`` (bounded in time); the size, and the bytes downloaded."""

    async def work(client):
        _, big = client.request(b"GET", b"/?bytes=2000000", [], None)
        await big.done.wait()
        size = 0
        ends = time.monotonic() + 15
        while time.monotonic() < ends:
            _, seen = client.request(b"GET", b"/", [], None)
            await seen.done.wait()
            size = json.loads(bytes(seen.body))["tls"]["quic"]["datagram_size"]
            if want(size):
                break
            await asyncio.sleep(0.1)
        return size, len(big.body)

    h3client = pytest.importorskip("h3client")
    return h3client.run(server.address, certs.ca, work, protocol=protocol, timeout=30)


def test_a_loopback_path_is_probed_up_to_the_largest_size(start_server, certs):
    client = narrow_path()
    server = http3_server(start_server, certs)
    size, downloaded = settle(server, certs, client, lambda size: size == MAX_SIZE)
    assert size == MAX_SIZE and downloaded == 2000000
    assert client.largest == MAX_SIZE


def test_a_path_narrower_than_its_route_is_found_and_the_data_still_flows(start_server, certs):
    client = narrow_path(4000)
    server = http3_server(start_server, certs)
    size, downloaded = settle(server, certs, client, lambda size: size > 4000 - RESOLUTION)
    assert 4000 - RESOLUTION < size <= 4000
    assert downloaded == 2000000


def test_a_client_that_accepts_less_is_never_sent_more(start_server, certs, monkeypatch):
    """aioquic's client sends no max_udp_payload_size; this one says 3,000 (as quic-go and
    others may), its connection's transport parameters rewritten as they are sent."""
    client = narrow_path()  # skips where aioquic is not installed
    from aioquic._buffer import Buffer
    from aioquic.asyncio import client as aioquic_client
    from aioquic.quic.packet import push_quic_transport_parameters

    from geventsrv.quic import pull_quic_transport_parameters

    class Accepts3000(aioquic_client.QuicConnection):
        def _serialize_transport_parameters(self) -> bytes:
            parameters = pull_quic_transport_parameters(
                Buffer(data=super()._serialize_transport_parameters())
            )
            parameters.max_udp_payload_size = 3000
            buf = Buffer(capacity=4096)
            push_quic_transport_parameters(buf, parameters)
            return buf.data

    monkeypatch.setattr(aioquic_client, "QuicConnection", Accepts3000)
    server = http3_server(start_server, certs)
    size, downloaded = settle(server, certs, client, lambda size: size == 3000)
    assert size == 3000 and downloaded == 2000000
    assert client.largest == 3000


def test_the_operators_bound_is_kept_and_1200_turns_probing_off(start_server, certs):
    bounded = narrow_path()
    server = http3_server(start_server, certs, "--http3-max-datagram", "3000")
    size, _ = settle(server, certs, bounded, lambda size: size == 3000)
    assert size == 3000 and bounded.largest == 3000

    base = narrow_path()
    server = http3_server(start_server, certs, "--http3-max-datagram", "1200")
    size, downloaded = settle(server, certs, base, lambda size: True)
    assert size == BASE_SIZE and downloaded == 2000000
    assert base.largest <= BASE_SIZE
