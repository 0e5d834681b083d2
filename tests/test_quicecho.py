"""The QUIC echo (ALPN ``echo``), over real QUIC on loopback with aioquic's client: each
bidirectional stream's bytes and end come back on it, several streams at once, and each
datagram (RFC 9221) comes back as one."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from support import CLIENT_TIMEOUT

h3client = pytest.importorskip("h3client")  # aioquic, the client


@pytest.fixture
def server(start_server, certs):
    return start_server("--mode", "http", "--tls-cert", certs.server, "--http3")


async def echo_stream(client, data: bytes, piece: int = 50000) -> bytes:
    """Send ``data`` on a new stream in pieces, then its end; what comes back, whole."""
    stream_id = client._quic.get_next_available_stream_id()
    received, done = client.streams[stream_id] = (bytearray(), asyncio.Event())
    for at in range(0, len(data), piece):
        client._quic.send_stream_data(stream_id, data[at : at + piece])
        client.transmit()
        await asyncio.sleep(0)
    client._quic.send_stream_data(stream_id, b"", end_stream=True)
    client.transmit()
    await done.wait()
    return bytes(received)


def test_streams_come_back_whole_and_ended_several_at_once(server, certs):
    payloads = [os.urandom(size) for size in (0, 1, 70000, 1 << 20)]

    async def work(client):
        return await asyncio.gather(*(echo_stream(client, data) for data in payloads))

    echoed = h3client.run(server.address, certs.ca, work, alpn=["echo"])
    for sent, back in zip(payloads, echoed, strict=True):
        assert hashlib.sha256(back).digest() == hashlib.sha256(sent).digest()


def test_datagrams_come_back_as_datagrams(server, certs):
    sizes = (1, 100, 1000)

    async def work(client):
        for size in sizes:
            client._quic.send_datagram_frame(bytes([size % 256]) * size)
        client.transmit()
        back: list[bytes] = []
        while len(back) < len(sizes):
            back.append(await asyncio.wait_for(client.datagrams.get(), CLIENT_TIMEOUT))
        return back

    back = h3client.run(server.address, certs.ca, work, alpn=["echo"])
    assert sorted(back, key=len) == [bytes([size % 256]) * size for size in sizes]


def test_a_stream_the_client_resets_is_reset_and_the_others_go_on(server, certs):
    async def work(client):
        stream_id = client._quic.get_next_available_stream_id()
        client.streams[stream_id] = (bytearray(), asyncio.Event())
        client._quic.send_stream_data(stream_id, b"half a message")
        client.transmit()
        await asyncio.sleep(0.2)
        client._quic.reset_stream(stream_id, 7)
        client.transmit()
        return await echo_stream(client, b"after the reset")

    assert h3client.run(server.address, certs.ca, work, alpn=["echo"]) == b"after the reset"


def test_an_alpn_the_server_does_not_speak_fails_the_handshake(server, certs):
    with pytest.raises((ConnectionError, TimeoutError, asyncio.TimeoutError)):
        h3client.run(server.address, certs.ca, lambda client: asyncio.sleep(0), alpn=["nope"],
                     timeout=5)  # fmt: skip
