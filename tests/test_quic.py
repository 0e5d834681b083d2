"""The QUIC endpoint on real UDP: what it sends to packets that open no connection (version
negotiation, nothing to garbage), address validation by Retry, the anti-amplification
limit, and the bounds a flood of Initial packets meets (per client, the handshake's time).

Client Initial packets are made by aioquic's client state machine and sent from a plain
UDP socket, so that the test decides what happens next (nothing, usually).
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from support import scraped

h3client = pytest.importorskip("h3client")  # aioquic, the client
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402  (after the skip)
from aioquic.quic.connection import QuicConnection  # noqa: E402

OPEN = "geventsrv_quic_open_connections"


def quic_server(start_server, certs, *flags: str):
    server = start_server("--mode", "http", "--tls-cert", certs.server, "--http3",
                          "--metrics", "127.0.0.1:0", *flags)  # fmt: skip
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    return server, port


def client_initial(address: tuple[str, int]) -> bytes:
    """A real client's first datagram (its ClientHello, padded to 1200 bytes)."""
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="x")
    client = QuicConnection(configuration=configuration)
    client.connect(address, now=time.monotonic())
    return client.datagrams_to_send(now=time.monotonic())[0][0]


def read_all(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram that arrives within ``seconds``."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(65536))
        except TimeoutError:
            break
    return got


@pytest.fixture
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock


def test_an_unknown_version_gets_a_version_negotiation_listing_quic_v1(start_server, certs, udp):
    server, _ = quic_server(start_server, certs)
    dcid, scid = os.urandom(8), os.urandom(8)
    packet = bytes([0xC0]) + bytes.fromhex("1a2a3a4a") + bytes([8]) + dcid + bytes([8]) + scid
    udp.sendto(packet.ljust(1200, b"\0"), server.address)
    answer = udp.recv(65536)
    assert answer[0] & 0x80 and answer[1:5] == b"\0\0\0\0"  # long header, version 0
    assert answer[6:14] == scid and answer[15:23] == dcid  # the ids, swapped
    versions = [answer[at : at + 4] for at in range(23, len(answer), 4)]
    assert bytes.fromhex("00000001") in versions


def test_garbage_and_short_initials_get_nothing_and_cost_nothing(start_server, certs, udp):
    server, port = quic_server(start_server, certs)
    for size in (0, 1, 20, 1199, 1500):
        udp.sendto(os.urandom(size), server.address)
    udp.sendto(client_initial(server.address)[:1100], server.address)  # an Initial under 1200
    assert read_all(udp, 0.5) == []
    assert scraped(port)[(OPEN, ())] == 0
    assert h3client.fetch(server.address, certs.ca).status == 200


def test_before_the_client_answers_the_server_sends_at_most_three_times_what_it_got(
    start_server, certs, udp
):
    """RFC 9000 8.1: an unvalidated address gets at most 3x its bytes, retransmissions
    included, however long it stays silent."""
    server, _ = quic_server(start_server, certs, "--tls-handshake-timeout", "3")
    initial = client_initial(server.address)
    udp.sendto(initial, server.address)
    answers = read_all(udp, 2.5)
    assert answers, "the server answered nothing"
    assert sum(len(answer) for answer in answers) <= 3 * len(initial)


def test_a_flood_of_initials_meets_the_per_client_bound_then_the_handshake_timeout(
    start_server, certs, udp
):
    server, port = quic_server(start_server, certs, "--max-conns-per-client", "5",
                               "--tls-handshake-timeout", "1")  # fmt: skip
    for _ in range(30):
        udp.sendto(client_initial(server.address), server.address)
    refused = ("geventsrv_quic_datagrams_dropped_total", (("reason", "refused"),))
    deadline = time.monotonic() + 10
    while scraped(port)[refused] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # however busy the machine, the sixth is refused in time
    samples = scraped(port)
    assert samples[refused] >= 1 and samples[(OPEN, ())] <= 5
    deadline = time.monotonic() + 10
    while scraped(port)[(OPEN, ())] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scraped(port)[(OPEN, ())] == 0  # each given up after the handshake's time
    assert h3client.fetch(server.address, certs.ca).status == 200


def test_with_retry_an_initial_costs_a_retry_packet_and_no_state(start_server, certs, udp):
    server, port = quic_server(start_server, certs, "--http3-retry")
    for _ in range(20):
        udp.sendto(client_initial(server.address), server.address)
    answers = read_all(udp, 0.5)
    assert answers and all((answer[0] & 0xF0) == 0xF0 for answer in answers)  # Retry packets
    samples = scraped(port)
    assert samples[(OPEN, ())] == 0 and samples[("geventsrv_quic_retries_total", ())] >= 1
    assert samples[("geventsrv_quic_connections_total", ())] == 0
    # A real client answers the Retry with its token, and is served.
    assert h3client.fetch(server.address, certs.ca).status == 200
    assert scraped(port)[("geventsrv_quic_connections_total", ())] == 1
