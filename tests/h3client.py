"""An HTTP/3 and QUIC client for the tests, on aioquic's own client (asyncio, in a thread of
its own so that a test stays plain blocking code).

Each call opens a connection, does its work, closes it, and is bounded in time
(:data:`TIMEOUT`): a server that does not answer fails the test, never hangs it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

TIMEOUT = 10.0
Header = tuple[bytes, bytes]


class Response:
    """One answer: status, headers (in order), body, trailers; or the reset that ended it."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[Header] = []
        self.trailers: list[Header] = []
        self.body = bytearray()
        self.reset: int | None = None
        self.done = asyncio.Event()
        self.pieces: asyncio.Queue[bytes] = asyncio.Queue()

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class ClientH3(H3Connection):
    """aioquic's HTTP/3 client, told which requests were HEAD: their answers carry the
    ``content-length`` a GET would get and no body (RFC 9110 9.3.2), which aioquic, not
    knowing the method, would take for a broken message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_streams: set[int] = set()

    def _check_content_length(self, stream: Any) -> None:
        if stream.stream_id not in self.head_streams:
            super()._check_content_length(stream)


class H3Client(QuicConnectionProtocol):
    """aioquic's protocol, with HTTP/3 (ALPN h3) or the QUIC echo (ALPN echo) on top."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        h3 = self._quic.configuration.alpn_protocols == H3_ALPN
        self.http = ClientH3(self._quic) if h3 else None
        self.responses: dict[int, Response] = {}
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.streams: dict[int, tuple[bytearray, asyncio.Event]] = {}
        self.terminated: ConnectionTerminated | None = None
        self.goaway = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            for response in self.responses.values():
                response.done.set()
            for _, done in self.streams.values():
                done.set()
        if isinstance(event, DatagramFrameReceived):
            self.datagrams.put_nowait(event.data)
        if isinstance(event, StreamReset):
            reset = self.responses.get(event.stream_id)
            if reset is not None:
                reset.reset = event.error_code
                reset.done.set()
        if self.http is None:
            if isinstance(event, StreamDataReceived) and event.stream_id in self.streams:
                data, done = self.streams[event.stream_id]
                data += event.data
                if event.end_stream:
                    done.set()
            return
        for http_event in self.http.handle_event(event):
            self._http_event(http_event)
        # A GOAWAY frame on the server's control stream (a unidirectional stream of its own).
        if (
            isinstance(event, StreamDataReceived)
            and event.stream_id % 4 == 3
            and (b"\x07" in event.data[:2])
        ):
            self.goaway.set()

    def _http_event(self, event: H3Event) -> None:
        response = self.responses.get(getattr(event, "stream_id", -1))
        if response is None:
            return
        if isinstance(event, HeadersReceived):
            if response.status == 0:
                response.headers = list(event.headers)
                response.status = int(dict(event.headers)[b":status"])
            else:
                response.trailers = list(event.headers)
        elif isinstance(event, DataReceived):
            response.body += event.data
            if event.data:
                response.pieces.put_nowait(event.data)
        if getattr(event, "stream_ended", False):
            response.done.set()

    def request(
        self,
        method: bytes,
        path: bytes,
        headers: list[Header],
        body: bytes | None,
        end: bool = True,
    ) -> tuple[int, Response]:
        """Send a request (its body, and its end unless ``end`` is false); its stream and the
        response that will fill in as it arrives."""
        assert self.http is not None
        stream_id = self._quic.get_next_available_stream_id()
        response = self.responses[stream_id] = Response()
        fields = [(b":method", method), (b":scheme", b"https"), (b":authority", b"localhost"),
                  (b":path", path), *headers]  # fmt: skip
        if method == b"CONNECT":
            fields = [(b":method", method), (b":protocol", path), (b":scheme", b"https"),
                      (b":authority", b"localhost"), (b":path", b"/"), *headers]  # fmt: skip
        if method == b"HEAD":
            self.http.head_streams.add(stream_id)
        self.http.send_headers(stream_id, fields, end_stream=body is None and end)
        if body is not None:
            self.http.send_data(stream_id, body, end_stream=end)
        self.transmit()
        return stream_id, response


def configuration(ca: str, alpn: list[str], cert: str | None = None) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=alpn, server_name="localhost")
    config.load_verify_locations(ca)
    config.verify_mode = ssl.CERT_REQUIRED
    config.max_datagram_frame_size = 65536
    if cert is not None:
        config.load_cert_chain(cert)
    return config


def run(
    address: tuple[str, int],
    ca: str,
    work: Callable[[H3Client], Awaitable[Any]],
    alpn: list[str] | None = None,
    cert: str | None = None,
    timeout: float = TIMEOUT,
    protocol: type[H3Client] | None = None,
) -> Any:
    """Connect (HTTP/3 unless ``alpn`` says otherwise), run ``work`` with the client, close.
    ``protocol``: a subclass of :class:`H3Client` to connect with."""

    async def main() -> Any:
        config = configuration(ca, alpn or H3_ALPN, cert)
        async with connect(
            address[0], address[1], configuration=config, create_protocol=protocol or H3Client
        ) as client:
            return await work(client)  # type: ignore[arg-type]

    return asyncio.run(asyncio.wait_for(main(), timeout))


def fetch(
    address: tuple[str, int],
    ca: str,
    path: bytes = b"/",
    method: bytes = b"GET",
    headers: list[Header] | None = None,
    body: bytes | None = None,
) -> Response:
    """One request on a connection of its own; its whole response."""

    async def work(client: H3Client) -> Response:
        _, response = client.request(method, path, headers or [], body)
        await response.done.wait()
        return response

    response: Response = run(address, ca, work)
    return response
