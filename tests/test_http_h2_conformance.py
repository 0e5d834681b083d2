"""RFC 9113 and RFC 7541's MUSTs, case by case, in raw frames, grouped as h2spec groups them,
and RFC 8441's (the extended CONNECT that opens a WebSocket on a stream).

h2spec cannot be installed here: each of its groups that applies to a server is written out
below, with what RFC 9113 requires of the server (``ours``). Each case's bytes are also fed
to the ``h2`` library's own server state machine: a differential check that the two agree
(``library``), with every place they part stated and why RFC 9113 sides with the server.

A verdict is the first thing the server says of the case: ``response <status>`` (the
request was served), ``reset <code>`` (RST_STREAM), ``goaway <code>``, ``ack`` (a PING or
SETTINGS answered, and nothing else wrong).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from h2client import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Closed,
    RawClient,
    frame,
    settings_payload,
)
from support import ServerProcess

h2_config = pytest.importorskip("h2.config")
h2_connection = pytest.importorskip("h2.connection")
h2_events = pytest.importorskip("h2.events")
h2_exceptions = pytest.importorskip("h2.exceptions")

GET = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "test")]
#: RFC 8441 4: an extended CONNECT opening a WebSocket (the stream stays open for it).
WEBSOCKET = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
             (":path", "/chat"), (":authority", "test"),
             ("sec-websocket-version", "13")]  # fmt: skip


@pytest.fixture(scope="module")
def server():
    server = ServerProcess("--port", "0", "--mode", "http", "--http2-max-streams", "5")
    server.wait_listening()
    yield server
    server.stop()
    assert "Traceback" not in server.stderr, server.stderr


def verdict(client: RawClient, stream: int) -> str:
    """The first thing the server says about ``stream`` (0: the connection)."""
    try:
        while True:
            seen = client.next()
            if seen.kind == GOAWAY and seen.code != 0:
                return f"goaway {seen.code}"
            if seen.kind == PING and seen.flags & ACK and stream == 0:
                return "ack"
            if seen.kind == SETTINGS and seen.flags & ACK and stream == 0:
                continue  # the preface's own ACK: the case's comes with a PING after it
            if seen.stream != stream or not stream:
                continue
            if seen.kind == RST_STREAM:
                return f"reset {seen.code}"
            if seen.kind == HEADERS:
                fields = dict(client.decoder.decode(seen.payload, raw=True))
                return f"response {int(fields[b':status'])}"
    except Closed:
        return "closed"


def library_verdict(data: bytes, stream: int) -> str:
    """What h2's server state machine makes of the same bytes."""
    config = h2_config.H2Configuration(client_side=False, header_encoding=None)
    conn = h2_connection.H2Connection(config=config)
    conn.local_settings = h2_connection.Settings(
        client=False,
        initial_values={
            h2_connection.SettingCodes.MAX_CONCURRENT_STREAMS: 5,
            h2_connection.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
        },
    )
    conn.initiate_connection()
    conn.data_to_send()
    try:
        events = conn.receive_data(data)
    except h2_exceptions.ProtocolError as exc:
        return f"goaway {int(exc.error_code)}"
    out = conn.data_to_send()
    while out:  # a RST_STREAM it queued for the case's stream says the most
        length, kind, stream_id = int.from_bytes(out[:3], "big"), out[3], int.from_bytes(
            out[5:9], "big"
        )  # fmt: skip
        if kind == RST_STREAM and stream_id == stream:
            return f"reset {int.from_bytes(out[9:13], 'big')}"
        out = out[9 + length :]
    for event in events:
        if isinstance(event, h2_events.RequestReceived) and event.stream_id == stream:
            return "response 200"
        if isinstance(event, h2_events.PingReceived) and stream == 0:
            return "ack"
    return "nothing"


Case = Callable[[RawClient], int]


def headers(client: RawClient, stream: int = 1, fields: Any = None, flags: int = 0) -> bytes:
    flags = flags or (END_HEADERS | END_STREAM)
    return frame(HEADERS, flags, stream, client.block(fields or GET))


def sent(client: RawClient, stream: int, *frames: bytes) -> int:
    """Send ``frames``; the stream whose fate is the case's (0: the connection's)."""
    client.send(*frames)
    return stream


def answered(client: RawClient, then: Callable[[], bytes]) -> int:
    """A GET on stream 1, its answer read, then the frame ``then`` makes (made after, so
    that header blocks are encoded in the order sent): the connection's fate."""
    client.send(headers(client, 1))
    client.until(DATA, 1)
    client.send(then())
    return 0


def ping_after(client: RawClient, *frames: bytes) -> int:
    """Send ``frames`` then a PING: the connection is fine if the PING is answered."""
    client.send(*frames, frame(PING, 0, 0, b"12345678"))
    return 0


def request_after(client: RawClient, *frames: bytes, stream: int = 1) -> int:
    client.send(*frames, headers(client, stream))
    return stream


# (id, what the client sends, RFC 9113's answer)
CASES: list[tuple[str, Case, str]] = [
    # 4.1 frame format
    ("4.1/unknown frame type is ignored", lambda c: ping_after(c, frame(0x20, 0, 0, b"xx")), "ack"),
    (
        "4.1/undefined flags are ignored",
        lambda c: sent(c, 0, frame(PING, 0x16, 0, b"12345678")),
        "ack",
    ),
    (
        "4.1/reserved bit is ignored",
        lambda c: (lambda made: sent(c, 1, made[:5] + b"\x80\0\0\x01" + made[9:]))(
            frame(HEADERS, 5, 1, c.block(GET))
        ),
        "response 200",
    ),
    # 4.2 frame size
    (
        "4.2/DATA of the largest size",
        lambda c: sent(
            c, 1, headers(c, 1, flags=END_HEADERS), frame(DATA, END_STREAM, 1, b"x" * 16384)
        ),
        "response 200",
    ),
    (
        "4.2/DATA past SETTINGS_MAX_FRAME_SIZE",
        lambda c: sent(
            c, 0, headers(c, 1, flags=END_HEADERS), frame(DATA, END_STREAM, 1, b"x" * 16385)
        ),
        "goaway 6",
    ),
    (
        "4.2/HEADERS past SETTINGS_MAX_FRAME_SIZE",
        lambda c: sent(c, 0, frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\0" * 16385)),
        "goaway 6",
    ),
    (
        "6.5.2/a header list past SETTINGS_MAX_HEADER_LIST_SIZE",
        lambda c: sent(
            c,
            1,
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                c.block([*GET, *[(f"x-{n}", "v" * 1000) for n in range(17)]]),
            ),
        ),
        "response 431",
    ),
    # 4.3 header compression
    (
        "4.3/an invalid header block",
        lambda c: sent(c, 0, frame(HEADERS, 5, 1, b"\xff\xff\xff\xff")),
        "goaway 9",
    ),
    # 5.1 stream states
    ("5.1/idle: DATA", lambda c: sent(c, 0, frame(DATA, 0, 1, b"x")), "goaway 1"),
    (
        "5.1/idle: RST_STREAM",
        lambda c: sent(c, 0, frame(RST_STREAM, 0, 1, b"\0\0\0\x08")),
        "goaway 1",
    ),
    (
        "5.1/idle: WINDOW_UPDATE",
        lambda c: sent(c, 0, frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\x01")),
        "goaway 1",
    ),
    (
        "5.1/idle: CONTINUATION",
        lambda c: sent(c, 0, frame(CONTINUATION, 4, 1, c.block(GET))),
        "goaway 1",
    ),
    (
        "5.1/half-closed (remote): DATA is a stream error",
        lambda c: sent(
            c,
            1,
            headers(
                c,
                1,
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/?delay=0.3"),
                    (":authority", "t"),
                ],
            ),
            frame(DATA, 0, 1, b"late"),
        ),
        "reset 5",
    ),
    (
        "5.1/closed: DATA after the stream ended both ways",
        lambda c: answered(c, lambda: frame(DATA, 0, 1, b"x")),
        "goaway 5",
    ),
    (
        "5.1/closed: HEADERS after the stream ended both ways",
        lambda c: answered(c, lambda: headers(c, 1)),
        "goaway 5",
    ),
    # 5.1.1 stream identifiers
    ("5.1.1/an even stream", lambda c: sent(c, 0, headers(c, 2)), "goaway 1"),
    (
        "5.1.1/a stream lower than one opened",
        lambda c: sent(c, 0, headers(c, 5), headers(c, 3)),
        "goaway 1",
    ),
    # 5.1.2 concurrency
    (
        "5.1.2/past SETTINGS_MAX_CONCURRENT_STREAMS",
        lambda c: sent(
            c,
            11,
            *(
                headers(
                    c,
                    n,
                    [
                        (":method", "GET"),
                        (":scheme", "http"),
                        (":path", "/?delay=0.5"),
                        (":authority", "t"),
                    ],
                )
                for n in (1, 3, 5, 7, 9, 11)
            ),
        ),
        "reset 7",
    ),
    # 5.3.1 dependencies
    (
        "5.3.1/HEADERS depending on its own stream",
        lambda c: sent(
            c,
            1,
            frame(
                HEADERS,
                END_HEADERS | END_STREAM | PRIORITY_FLAG,
                1,
                b"\0\0\0\x01\x10" + c.block(GET),
            ),
        ),
        "reset 1",
    ),
    (
        "5.3.1/PRIORITY depending on its own stream",
        lambda c: sent(c, 3, frame(PRIORITY, 0, 3, b"\0\0\0\x03\x10")),
        "reset 1",
    ),
    # 5.5 extending
    (
        "5.5/an unknown frame inside a header block",
        lambda c: sent(c, 0, frame(HEADERS, END_STREAM, 1, c.block(GET)), frame(0x20, 0, 0, b"x")),
        "goaway 1",
    ),
    # 6.1 DATA
    ("6.1/DATA on stream 0", lambda c: sent(c, 0, frame(DATA, 0, 0, b"x")), "goaway 1"),
    (
        "6.1/DATA padding past the frame",
        lambda c: sent(
            c, 0, headers(c, 1, flags=END_HEADERS), frame(DATA, PADDED | END_STREAM, 1, b"\x08abc")
        ),
        "goaway 1",
    ),
    # 6.2 HEADERS
    ("6.2/HEADERS on stream 0", lambda c: sent(c, 0, headers(c, 0)), "goaway 1"),
    (
        "6.2/HEADERS padding past the frame",
        lambda c: sent(c, 0, frame(HEADERS, END_HEADERS | PADDED, 1, b"\xff" + c.block(GET))),
        "goaway 1",
    ),
    (
        "6.2/a header block cut by another stream's frame",
        lambda c: sent(c, 0, frame(HEADERS, END_STREAM, 1, c.block(GET)), headers(c, 3)),
        "goaway 1",
    ),
    # 6.3 PRIORITY
    (
        "6.3/PRIORITY on stream 0",
        lambda c: sent(c, 0, frame(PRIORITY, 0, 0, b"\0\0\0\x01\x10")),
        "goaway 1",
    ),
    (
        "6.3/PRIORITY not 5 bytes",
        lambda c: sent(c, 1, frame(PRIORITY, 0, 1, b"\0\0\0\x03")),
        "reset 6",
    ),
    # 6.4 RST_STREAM
    (
        "6.4/RST_STREAM on stream 0",
        lambda c: sent(c, 0, frame(RST_STREAM, 0, 0, b"\0\0\0\x08")),
        "goaway 1",
    ),
    (
        "6.4/RST_STREAM not 4 bytes",
        lambda c: sent(
            c, 0, headers(c, 1, flags=END_HEADERS), frame(RST_STREAM, 0, 1, b"\0\0\x08")
        ),
        "goaway 6",
    ),
    # 6.5 SETTINGS
    (
        "6.5/a SETTINGS ACK with a payload",
        lambda c: sent(c, 0, frame(SETTINGS, ACK, 0, settings_payload(enable_push=0))),
        "goaway 6",
    ),
    ("6.5/SETTINGS on a stream", lambda c: sent(c, 0, frame(SETTINGS, 0, 1)), "goaway 1"),
    (
        "6.5/SETTINGS not in 6-byte pairs",
        lambda c: sent(c, 0, frame(SETTINGS, 0, 0, b"\0\x02\0")),
        "goaway 6",
    ),
    (
        "6.5.2/ENABLE_PUSH of 2",
        lambda c: sent(c, 0, frame(SETTINGS, 0, 0, settings_payload(enable_push=2))),
        "goaway 1",
    ),
    (
        "6.5.2/INITIAL_WINDOW_SIZE past 2^31-1",
        lambda c: sent(c, 0, frame(SETTINGS, 0, 0, settings_payload(initial_window_size=1 << 31))),
        "goaway 3",
    ),
    (
        "6.5.2/MAX_FRAME_SIZE under 16384",
        lambda c: sent(c, 0, frame(SETTINGS, 0, 0, settings_payload(max_frame_size=16383))),
        "goaway 1",
    ),
    (
        "6.5.2/MAX_FRAME_SIZE past 2^24-1",
        lambda c: sent(c, 0, frame(SETTINGS, 0, 0, settings_payload(max_frame_size=1 << 24))),
        "goaway 1",
    ),
    (
        "6.5.2/an unknown setting is ignored",
        lambda c: ping_after(c, frame(SETTINGS, 0, 0, struct.pack(">HI", 0xFF, 1))),
        "ack",
    ),
    # 6.7 PING
    ("6.7/PING answered with its payload", lambda c: ping_after(c), "ack"),
    ("6.7/PING on a stream", lambda c: sent(c, 0, frame(PING, 0, 1, b"12345678")), "goaway 1"),
    ("6.7/PING not 8 bytes", lambda c: sent(c, 0, frame(PING, 0, 0, b"1234567")), "goaway 6"),
    # 6.8 GOAWAY
    ("6.8/GOAWAY on a stream", lambda c: sent(c, 0, frame(GOAWAY, 0, 1, b"\0" * 8)), "goaway 1"),
    # 6.9 WINDOW_UPDATE
    (
        "6.9/a connection increment of 0",
        lambda c: sent(c, 0, frame(WINDOW_UPDATE, 0, 0, b"\0" * 4)),
        "goaway 1",
    ),
    (
        "6.9/a stream increment of 0",
        lambda c: sent(
            c, 1, headers(c, 1, flags=END_HEADERS), frame(WINDOW_UPDATE, 0, 1, b"\0" * 4)
        ),
        "reset 1",
    ),
    (
        "6.9/WINDOW_UPDATE not 4 bytes",
        lambda c: sent(c, 0, frame(WINDOW_UPDATE, 0, 0, b"\0\0\x01")),
        "goaway 6",
    ),
    (
        "6.9.1/the connection window past 2^31-1",
        lambda c: sent(c, 0, frame(WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff")),
        "goaway 3",
    ),
    (
        "6.9.1/a stream window past 2^31-1",
        lambda c: sent(
            c, 1, headers(c, 1, flags=END_HEADERS), frame(WINDOW_UPDATE, 0, 1, b"\x7f\xff\xff\xff")
        ),
        "reset 3",
    ),
    (
        "6.9.2/INITIAL_WINDOW_SIZE making a window past 2^31-1",
        lambda c: sent(
            c,
            0,
            headers(c, 1, flags=END_HEADERS),
            frame(WINDOW_UPDATE, 0, 1, b"\x7f\xff\x00\x00"),
            frame(SETTINGS, 0, 0, settings_payload(initial_window_size=(1 << 31) - 1)),
        ),
        "goaway 3",
    ),
    # 6.10 CONTINUATION
    (
        "6.10/a header block in three frames",
        lambda c: (
            lambda block: sent(
                c,
                1,
                frame(HEADERS, END_STREAM, 1, block[:3]),
                frame(CONTINUATION, 0, 1, block[3:6]),
                frame(CONTINUATION, END_HEADERS, 1, block[6:]),
            )
        )(c.block(GET)),
        "response 200",
    ),
    (
        "6.10/CONTINUATION after END_HEADERS",
        lambda c: sent(c, 0, headers(c, 1), frame(CONTINUATION, END_HEADERS, 1, c.block(GET))),
        "goaway 1",
    ),
    (
        "6.10/CONTINUATION on another stream",
        lambda c: sent(
            c,
            0,
            frame(HEADERS, END_STREAM, 1, c.block(GET)),
            frame(CONTINUATION, END_HEADERS, 3, b""),
        ),
        "goaway 1",
    ),
    # 8.1 HTTP messages
    (
        "8.1/trailers without END_STREAM",
        lambda c: sent(
            c,
            1,
            headers(c, 1, [*GET[:2], (":path", "/?delay=0.3"), GET[3]], flags=END_HEADERS),
            frame(HEADERS, END_HEADERS, 1, c.block([("x-t", "1")])),
        ),
        "reset 1",
    ),
    (
        "8.1.1/DATA past content-length",
        lambda c: sent(
            c,
            1,
            headers(c, 1, [*GET, ("content-length", "1")], flags=END_HEADERS),
            frame(DATA, END_STREAM, 1, b"toolong"),
        ),
        "reset 1",
    ),
    (
        "8.1.1/DATA short of content-length",
        lambda c: sent(
            c,
            1,
            headers(c, 1, [*GET, ("content-length", "10")], flags=END_HEADERS),
            frame(DATA, END_STREAM, 1, b"short"),
        ),
        "reset 1",
    ),
    # 8.2 fields
    (
        "8.2/an upper-case field name",
        lambda c: sent(c, 1, headers(c, 1, [*GET, ("X-Up", "1")])),
        "reset 1",
    ),
    (
        "8.2.2/a connection-specific field",
        lambda c: sent(c, 1, headers(c, 1, [*GET, ("connection", "keep-alive")])),
        "reset 1",
    ),
    (
        "8.2.2/TE other than trailers",
        lambda c: sent(c, 1, headers(c, 1, [*GET, ("te", "gzip")])),
        "reset 1",
    ),
    (
        "8.2.2/TE: trailers is allowed",
        lambda c: sent(c, 1, headers(c, 1, [*GET, ("te", "trailers")])),
        "response 200",
    ),
    (
        "8.2.1/a value with a leading space",
        lambda c: sent(c, 1, headers(c, 1, [*GET, ("x-a", " lead")])),
        "reset 1",
    ),
    # 8.3 pseudo-header fields
    (
        "8.3/an unknown pseudo-header",
        lambda c: sent(c, 1, headers(c, 1, [*GET, (":foo", "x")])),
        "reset 1",
    ),
    (
        "8.3/a response pseudo-header",
        lambda c: sent(c, 1, headers(c, 1, [*GET, (":status", "200")])),
        "reset 1",
    ),
    (
        "8.3/a pseudo-header after a field",
        lambda c: sent(c, 1, headers(c, 1, [*GET[:3], ("x-a", "1"), GET[3]])),
        "reset 1",
    ),
    (
        "8.3/a pseudo-header twice",
        lambda c: sent(c, 1, headers(c, 1, [*GET, (":path", "/again")])),
        "reset 1",
    ),
    (
        "8.3/a pseudo-header in trailers",
        lambda c: sent(
            c,
            1,
            headers(c, 1, flags=END_HEADERS),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, c.block([(":path", "/x")])),
        ),
        "reset 1",
    ),
    ("8.3.1/no :method", lambda c: sent(c, 1, headers(c, 1, GET[1:])), "reset 1"),
    ("8.3.1/no :scheme", lambda c: sent(c, 1, headers(c, 1, [GET[0], *GET[2:]])), "reset 1"),
    ("8.3.1/no :path", lambda c: sent(c, 1, headers(c, 1, [*GET[:2], GET[3]])), "reset 1"),
    (
        "8.3.1/an empty :path",
        lambda c: sent(c, 1, headers(c, 1, [*GET[:2], (":path", ""), GET[3]])),
        "reset 1",
    ),
    # 8.4 server push
    (
        "8.4/a client's PUSH_PROMISE",
        lambda c: sent(
            c,
            0,
            headers(c, 1, flags=END_HEADERS),
            frame(PUSH_PROMISE, END_HEADERS, 1, b"\0\0\0\x02"),
        ),
        "goaway 1",
    ),
    # RFC 7541 HPACK
    (
        "hpack/an index past the tables",
        lambda c: sent(c, 0, frame(HEADERS, 5, 1, b"\xbf\x7f")),
        "goaway 9",
    ),
    (
        "hpack/a table size update past the setting",
        lambda c: sent(c, 0, frame(HEADERS, 5, 1, b"\x3f\xe2\x1f" + c.block(GET))),
        "goaway 9",
    ),
    (
        "hpack/a table size update after a field",
        lambda c: sent(c, 0, frame(HEADERS, 5, 1, c.block(GET) + b"\x20")),
        "goaway 9",
    ),
    # RFC 8441: the extended CONNECT
    (
        "8441-3/ENABLE_CONNECT_PROTOCOL neither 0 nor 1",
        lambda c: ping_after(c, frame(SETTINGS, 0, 0, settings_payload(enable_connect_protocol=2))),
        "goaway 1",
    ),
    (
        "8441-4/a WebSocket's extended CONNECT",
        lambda c: sent(c, 1, headers(c, 1, WEBSOCKET, flags=END_HEADERS)),
        "response 200",
    ),
    (
        "8441-4/:protocol on a GET",
        lambda c: sent(c, 1, headers(c, 1, [*GET, (":protocol", "websocket")])),
        "reset 1",
    ),
    (
        "8441-4/an extended CONNECT without :path",
        lambda c: sent(c, 1, headers(c, 1, [*WEBSOCKET[:3], *WEBSOCKET[4:]], flags=END_HEADERS)),
        "reset 1",
    ),
    (
        "8441-4/an extended CONNECT without :scheme",
        lambda c: sent(c, 1, headers(c, 1, [*WEBSOCKET[:2], *WEBSOCKET[3:]], flags=END_HEADERS)),
        "reset 1",
    ),
    (
        "8441-4/an extended CONNECT for a protocol not served",
        lambda c: sent(c, 1, headers(c, 1, [WEBSOCKET[0], (":protocol", "chat"), *WEBSOCKET[2:]])),
        "response 501",
    ),
]


MALFORMED = "RFC 9113 8.1.1: a malformed request is a stream error"
COMPRESSION = "RFC 9113 4.3: a decoding error is COMPRESSION_ERROR"
#: Where the h2 library parts from RFC 9113 (as set up here), case by case: its verdict, and
#: why the server's is the RFC's. In every other case, the two agree.
LIBRARY_APART = {
    "4.3/an invalid header block": ("goaway 1", COMPRESSION),
    "5.1/closed: DATA after the stream ended both ways": (
        "nothing", "it answered nothing: to it the stream is still open"),
    "5.1/closed: HEADERS after the stream ended both ways": (
        "nothing", "it answered nothing: to it the stream is still open"),
    "5.1.2/past SETTINGS_MAX_CONCURRENT_STREAMS": ("goaway 1", "RFC 9113 5.1.2: a stream error"),
    "5.3.1/HEADERS depending on its own stream": ("goaway 1", "RFC 9113 5.3.1: a stream error"),
    "5.3.1/PRIORITY depending on its own stream": ("goaway 1", "RFC 9113 5.3.1: a stream error"),
    "6.3/PRIORITY not 5 bytes": ("goaway 6", "RFC 9113 6.3: a stream error"),
    "6.5/a SETTINGS ACK with a payload": ("goaway 1", "RFC 9113 6.5: FRAME_SIZE_ERROR"),
    "6.5.2/a header list past SETTINGS_MAX_HEADER_LIST_SIZE": (
        "response 200", "set up with no limit, it takes any list"),
    "6.9/a stream increment of 0": ("goaway 1", "RFC 9113 6.9: a stream error"),
    "8.1/trailers without END_STREAM": ("goaway 1", MALFORMED),
    **dict.fromkeys(
        (
            "8.1.1/DATA past content-length", "8.1.1/DATA short of content-length",
            "8.2/an upper-case field name", "8.2.2/a connection-specific field",
            "8.2.2/TE other than trailers", "8.2.1/a value with a leading space",
            "8.3/an unknown pseudo-header", "8.3/a response pseudo-header",
            "8.3/a pseudo-header after a field", "8.3/a pseudo-header twice",
            "8.3/a pseudo-header in trailers", "8.3.1/no :method", "8.3.1/no :scheme",
            "8.3.1/no :path", "8.3.1/an empty :path",
        ),
        ("goaway 1", MALFORMED),
    ),
    **dict.fromkeys(
        ("8441-4/:protocol on a GET", "8441-4/an extended CONNECT without :path",
         "8441-4/an extended CONNECT without :scheme"),
        ("goaway 1", MALFORMED),
    ),
    "8441-4/an extended CONNECT for a protocol not served": (
        "response 200", "a request it takes: which protocols are served is the server's to say"),
    **dict.fromkeys(
        ("hpack/an index past the tables", "hpack/a table size update past the setting",
         "hpack/a table size update after a field"),
        ("goaway 1", COMPRESSION),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("name", "case", "ours"), CASES, ids=[c[0] for c in CASES])
def test_rfc_9113_and_7541(server, name, case, ours):
    with RawClient(server.address) as client:
        stream = case(client)
        assert verdict(client, stream) == ours
    library, _ = LIBRARY_APART.get(name, (ours, ""))
    assert library_verdict(bytes(client.sent), stream) == library


def test_every_difference_from_the_library_names_a_case():
    assert set(LIBRARY_APART) <= {name for name, _, _ in CASES}


def test_the_server_survives_every_case_and_still_serves(server):
    with RawClient(server.address) as client:
        client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, client.block(GET)))
        assert client.response(1).status == 200


@pytest.mark.parametrize(
    "opening",
    [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", PREFACE + frame(PING, 0, 0, b"12345678")],
    ids=["not the preface", "the preface without SETTINGS"],
)
def test_3_4_the_preface_is_exact_and_its_settings_come_first(server, opening):
    import socket

    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(opening)
        client = RawClient(server.address, preface=b"", sock=sock)
        assert verdict(client, 0) == "goaway 1"
