"""The http mode's WebSocket echo over real sockets: a real client library, and crafted frames
for the cases of the Autobahn testsuite's sections that apply to an echo server.

Sections covered (Autobahn numbering): 1 framing, 2 pings and pongs, 3 reserved bits,
4 opcodes, 5 fragmentation, 6 UTF-8 handling, 7 close handling, 9 limits (message size),
12/13 permessage-deflate. Each case is one parametrized test id below, run over HTTP/1.1's
upgrade and over an HTTP/2 stream (RFC 8441) alike: the echo is the same on both.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator

import pytest
from support import CLIENT_TIMEOUT, ServerProcess, scraped
from wsframes import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    close_payload,
    frame,
    open_websocket,
)

websockets_sync = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402  (after the skip)


@pytest.fixture(scope="module")
def ws_server() -> Iterator[ServerProcess]:
    """One server for the module: the cases run one after another against it, as clients
    would, and at the end its stderr must be free of tracebacks."""
    server = ServerProcess("--port", "0", "--mode", "http", "--ws-max-message", "100000")
    server.wait_listening()
    yield server
    server.stop()
    assert "Traceback" not in server.stderr, server.stderr


@pytest.fixture(params=["1.1", "2"], ids=["http1", "http2"])
def wire(request) -> str:
    """The HTTP version the WebSocket is opened over: HTTP/1.1's upgrade, or HTTP/2's
    extended CONNECT (RFC 8441) on an h2c connection."""
    return request.param


def url(server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -- a real client: the websockets library -----------------------------------------------


def test_text_binary_fragmented_and_compressed_messages_come_back_byte_exact(ws_server):
    for compression in (None, "deflate"):
        with websockets_sync.connect(
            url(ws_server), compression=compression, open_timeout=10
        ) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (extensions is not None) == (compression == "deflate")
            ws.send("héllo, wörld ✓")
            assert ws.recv(timeout=CLIENT_TIMEOUT) == "héllo, wörld ✓"
            payload = bytes(range(256)) * 300
            ws.send(payload)
            assert ws.recv(timeout=CLIENT_TIMEOUT) == payload
            ws.send(["frag", "men", "ted"])  # one message in three frames
            assert ws.recv(timeout=CLIENT_TIMEOUT) == "fragmented"
            ws.send([b"\x00", b"\xff" * 70000])
            assert ws.recv(timeout=CLIENT_TIMEOUT) == b"\x00" + b"\xff" * 70000
            ws.ping(b"are you there").wait(CLIENT_TIMEOUT)


def test_the_subprotocol_is_answered_and_the_close_code_echoed(ws_server):
    with websockets_sync.connect(url(ws_server), subprotocols=["v2.echo", "v1.echo"]) as ws:
        assert ws.subprotocol == "v2.echo"
        ws.close(4321, "done here")
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4321, "done here")


def test_no_greeting_and_the_reflection_only_when_asked(ws_server):
    with websockets_sync.connect(url(ws_server, "/plain")) as ws:
        ws.send("first")
        assert ws.recv(timeout=CLIENT_TIMEOUT) == "first"  # nothing came before the echo
    with websockets_sync.connect(
        url(ws_server, "/seen?reflect=1"), additional_headers={"X-Forwarded-For": "203.0.113.5"}
    ) as ws:
        reflection = json.loads(ws.recv(timeout=CLIENT_TIMEOUT))
        assert reflection["request"]["path"] == "/seen"
        assert reflection["client"]["x_forwarded_for"] == ["203.0.113.5"]
        ws.send("then the echo")
        assert ws.recv(timeout=CLIENT_TIMEOUT) == "then the echo"


def test_a_message_over_the_bound_is_closed_1009_even_compressed(ws_server):
    for compression in (None, "deflate"):  # deflate: 2 MB of zeros is a few KiB on the wire
        with (
            websockets_sync.connect(url(ws_server), compression=compression, max_size=None) as ws,
            pytest.raises(ConnectionClosed),  # in the send, or in the recv after it
        ):
            ws.send(b"\x00" * 2_000_000)
            ws.recv(timeout=CLIENT_TIMEOUT)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009


# -- crafted frames: the Autobahn sections that apply ------------------------------------


def exchange_frames(
    server, frames: list[bytes], version: str = "1.1"
) -> list[tuple[bool, int, bytes]]:
    """Send ``frames``, then a close; every frame the server sent, up to its close."""
    sock, reader, _ = open_websocket(server.address, version=version)
    with sock:
        sock.sendall(b"".join(frames) + frame(CLOSE, close_payload(1000)))
        seen = []
        while True:
            try:
                seen.append(reader.next())
            except EOFError:
                return seen
            if seen[-1][1] == CLOSE:
                return seen


def closed_with(seen: list[tuple[bool, int, bytes]]) -> int | None:
    assert seen and seen[-1][1] == CLOSE, seen
    payload = seen[-1][2]
    return int.from_bytes(payload[:2], "big") if payload else None


@pytest.mark.parametrize("size", [0, 125, 126, 127, 65535, 65536, 99999])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_section_1_framing_every_length_encoding(ws_server, wire, opcode, size):
    payload = b"*" * size
    seen = exchange_frames(ws_server, [frame(opcode, payload)], wire)
    assert seen[0] == (True, opcode, payload) and closed_with(seen) == 1000


@pytest.mark.parametrize(
    ("frames", "expect"),
    [
        ([frame(PING, b"x" * 125)], [(PONG, b"x" * 125)]),
        ([frame(PING)], [(PONG, b"")]),
        ([frame(PONG, b"unasked")], []),  # an unsolicited pong is ignored
        ([frame(PING, bytes([i])) for i in range(10)], [(PONG, bytes([i])) for i in range(10)]),
        ([frame(PING, b"x" * 126)], 1002),  # control frames carry at most 125 bytes
        ([frame(PING, b"p", fin=False)], 1002),  # and are never fragmented
    ],
    ids=["ping-125", "ping-empty", "unsolicited-pong", "ten-pings", "ping-126", "ping-fragmented"],
)
def test_section_2_pings_and_pongs(ws_server, wire, frames, expect):
    seen = exchange_frames(ws_server, frames, wire)
    if isinstance(expect, int):
        assert closed_with(seen) == expect
    else:
        assert [(op, data) for _, op, data in seen[:-1]] == expect and closed_with(seen) == 1000


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
def test_section_3_reserved_bits_without_an_extension_fail(ws_server, wire, rsv):
    assert closed_with(exchange_frames(ws_server, [frame(TEXT, b"hi", rsv=rsv)], wire)) == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_section_4_reserved_opcodes_fail(ws_server, wire, opcode):
    assert closed_with(exchange_frames(ws_server, [frame(opcode, b"x")], wire)) == 1002


@pytest.mark.parametrize(
    ("frames", "expect"),
    [
        ([frame(TEXT, b"frag", fin=False), frame(PING, b"mid"), frame(CONTINUATION, b"ment")],
         [(PONG, b"mid"), (TEXT, b"fragment")]),
        ([frame(BINARY, b"a", fin=False)] + [frame(CONTINUATION, b"b", fin=False)] * 50
         + [frame(CONTINUATION, b"c")], [(BINARY, b"a" + b"b" * 50 + b"c")]),
        ([frame(CONTINUATION, b"orphan")], 1002),
        ([frame(TEXT, b"one", fin=False), frame(TEXT, b"two")], 1002),
        ([frame(TEXT, b"", fin=False), frame(CONTINUATION, b"")], [(TEXT, b"")]),
    ],
    ids=["ping-between-fragments", "52-fragments", "continuation-first", "interleaved", "empty"],
)  # fmt: skip
def test_section_5_fragmentation(ws_server, wire, frames, expect):
    seen = exchange_frames(ws_server, frames, wire)
    if isinstance(expect, int):
        assert closed_with(seen) == expect
    else:
        assert [(op, data) for _, op, data in seen[:-1]] == expect and closed_with(seen) == 1000


SNOWMAN = "☃".encode()  # three bytes: e2 98 83


@pytest.mark.parametrize(
    ("frames", "expect"),
    [
        ([frame(TEXT, "κόσμε 𝄞".encode())], "κόσμε 𝄞".encode()),
        ([frame(TEXT, SNOWMAN[:1], fin=False), frame(CONTINUATION, SNOWMAN[1:])], SNOWMAN),
        ([frame(TEXT, SNOWMAN[:2], fin=False), frame(CONTINUATION, SNOWMAN[2:])], SNOWMAN),
        ([frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")], 1007),
        ([frame(TEXT, b"\xff")], 1007),
        ([frame(TEXT, b"ok", fin=False), frame(CONTINUATION, b"\xc0\xaf")], 1007),  # overlong
        ([frame(TEXT, SNOWMAN[:2])], 1007),  # a code point cut by the message's end
        ([frame(TEXT, b"\xf4\x90\x80\x80")], 1007),  # past U+10FFFF
    ],
    ids=["valid", "split-after-1", "split-after-2", "surrogate", "ff", "overlong-in-fragment",
         "truncated", "beyond-unicode"],
)  # fmt: skip
def test_section_6_utf8(ws_server, wire, frames, expect):
    seen = exchange_frames(ws_server, frames, wire)
    if isinstance(expect, int):
        assert closed_with(seen) == expect
    else:
        assert seen[0][1:] == (TEXT, expect) and closed_with(seen) == 1000


@pytest.mark.parametrize(
    ("payload", "expect"),
    [
        (close_payload(1000, b"bye"), (1000, b"bye")),
        (close_payload(4999), (4999, b"")),
        (close_payload(3000, "ré".encode()), (3000, "ré".encode())),
        (b"", None),  # no code: the answer has none either
        (b"\x03", 1002),  # one byte cannot hold a code
        (close_payload(999), 1002),
        (close_payload(1004), 1002),
        (close_payload(1005), 1002),  # codes that must never be sent
        (close_payload(1006), 1002),
        (close_payload(1015), 1002),
        (close_payload(5000), 1002),
        (close_payload(1000, b"\xff"), 1007),
    ],
    ids=["normal-reason", "4999", "utf8-reason", "empty", "one-byte", "999", "1004", "1005",
         "1006", "1015", "5000", "bad-reason"],
)  # fmt: skip
def test_section_7_close_handling(ws_server, wire, payload, expect):
    sock, reader, _ = open_websocket(ws_server.address, version=wire)
    with sock:
        sock.sendall(frame(CLOSE, payload) + frame(TEXT, b"after the close: ignored"))
        _, opcode, answer = reader.next()
        assert opcode == CLOSE
        if isinstance(expect, int):
            assert int.from_bytes(answer[:2], "big") == expect
        elif expect is None:
            assert answer == b""
        else:
            assert (int.from_bytes(answer[:2], "big"), answer[2:]) == expect
        assert sock.recv(100) == b""  # then the server closes the TCP connection


def test_section_9_a_message_past_the_bound_in_fragments_is_1009(ws_server, wire):
    frames = [frame(BINARY, b"x" * 60000, fin=False), frame(CONTINUATION, b"x" * 60000)]
    assert closed_with(exchange_frames(ws_server, frames, wire)) == 1009


def test_an_unmasked_client_frame_fails_the_connection(ws_server, wire):
    assert closed_with(exchange_frames(ws_server, [frame(TEXT, b"bare", mask=False)], wire)) == 1002


# -- over HTTP/2 (RFC 8441): wsproto's frames on a stream, other streams beside it ------


def test_over_http2_wsproto_messages_compressed_and_a_request_on_the_same_connection(ws_server):
    """wsproto as the client on an HTTP/2 stream: permessage-deflate agreed, every kind of
    message echoed; meanwhile a GET on another stream of the connection is answered."""
    from wsproto.connection import Connection as WsConnection
    from wsproto.connection import ConnectionType
    from wsproto.events import BytesMessage, Message, Pong, TextMessage
    from wsproto.events import Ping as PingEvent
    from wsproto.extensions import PerMessageDeflate

    deflate = PerMessageDeflate()
    offer = deflate.offer()
    assert isinstance(offer, str)
    extra = f"Sec-WebSocket-Extensions: {deflate.name}; {offer}\r\n"
    extra += "Sec-WebSocket-Protocol: v2.echo, v1\r\n"
    with open_websocket(ws_server.address, "/over-h2", extra, version="2")[0] as stream:
        fields = dict(
            line.split(": ", 1) for line in stream.head.decode().split("\r\n")[1:] if line
        )
        assert fields["sec-websocket-protocol"] == "v2.echo"
        agreed = fields["sec-websocket-extensions"]
        assert agreed.startswith("permessage-deflate")
        deflate.finalize(agreed)
        ws = WsConnection(ConnectionType.CLIENT, extensions=[deflate])

        def roundtrip(*events) -> list:
            """Send ``events``; what came back, each message whole, once one answer per
            message or ping has come."""
            stream.sendall(b"".join(ws.send(event) for event in events))
            wanted = sum(1 for e in events if not isinstance(e, Message) or e.message_finished)
            got: list = []
            parts: list = []
            while len(got) < wanted:
                ws.receive_data(stream.recv(65536))
                for event in ws.events():
                    if isinstance(event, Message):
                        parts.append(event.data)
                        if event.message_finished:
                            got.append((type(event), parts[0][:0].join(parts)))
                            parts = []
                    else:
                        got.append((type(event), getattr(event, "payload", event)))
            return got

        assert roundtrip(TextMessage("héllo over h2 ✓")) == [(TextMessage, "héllo over h2 ✓")]
        payload = bytes(range(256)) * 300  # 76,800 bytes, a few hundred on the wire
        assert roundtrip(BytesMessage(payload)) == [(BytesMessage, payload)]
        assert roundtrip(TextMessage("frag", message_finished=False), TextMessage("mented")) == [
            (TextMessage, "fragmented")
        ]
        assert roundtrip(PingEvent(b"there?")) == [(Pong, b"there?")]
        reflection = json.loads(stream.request("/beside?x=1"))
        assert reflection["request"]["stream"] == 3 and reflection["request"]["path"] == "/beside"
        assert roundtrip(TextMessage("still open")) == [(TextMessage, "still open")]


def test_over_http2_a_bad_version_is_refused_and_the_stream_alone_ends(ws_server):
    from h2client import HEADERS as H2_HEADERS
    from h2client import RawClient, frame

    with RawClient(ws_server.address) as client:
        fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                  (":path", "/"), (":authority", "test"),
                  ("sec-websocket-version", "8")]  # fmt: skip
        client.send(frame(H2_HEADERS, 0x4, 1, client.block(fields)))
        refused = client.response(1)
        assert refused.status == 400 and refused.header(b"sec-websocket-version") == b"13"
        client.request(3, "/after")
        assert client.response(3).status == 200


# -- the handshake ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", 400),
        ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"
         "Sec-WebSocket-Version: 13\r\n", 400),
        ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
         "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n", 426),
        ("Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n", 400),
    ],
    ids=["no-key", "short-key", "old-version", "no-connection-upgrade"],
)  # fmt: skip
def test_a_bad_handshake_is_refused_in_http(ws_server, headers, status):
    with socket.create_connection(ws_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:200]
    if status == 426:  # RFC 6455 4.4: the refusal says which version is served
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in data


KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"


@pytest.mark.parametrize(
    "extra",
    [
        b"Sec-WebSocket-Protocol: \xe9\r\n",
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=abc\r\n",
        b"Connection: Upgrade, \xff\r\n",
    ],
    ids=["protocol-past-ascii", "bad-window-bits", "connection-past-ascii"],
)
def test_bad_bytes_in_the_websocket_headers_get_400_not_a_failed_handler(ws_server, extra):
    with socket.create_connection(ws_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + KEY.encode()
            + extra
            + b"\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ") and b"a bad Sec-WebSocket header" in data
    assert "handler failed" not in ws_server.stderr


def test_only_a_token_is_taken_as_the_subprotocol(ws_server):
    sock, _, head = open_websocket(ws_server.address, extra="Sec-WebSocket-Protocol: a b, ok\r\n")
    sock.close()
    assert b"Sec-WebSocket-Protocol: ok\r\n" in head


def test_the_rfc_6455_sample_key_gets_the_rfc_accept(ws_server):
    with socket.create_connection(ws_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
            b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" + frame(TEXT, b"right behind the head")
        )
        data = b""
        while b"right behind the head" not in data:
            data += sock.recv(65536)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data


# -- operating it ------------------------------------------------------------------------


def test_shutdown_sends_1001_to_open_websockets_and_exits_0(start_server, wire):
    """Over HTTP/2 the stream is spared by the GOAWAY (NO_ERROR) and ends after the close."""
    server = start_server("--mode", "http", "--drain-timeout", "30", "--access-log")
    sock, reader, _ = open_websocket(server.address, "/held", version=wire)
    with sock:
        sock.sendall(frame(TEXT, b"before"))
        assert reader.next()[1:] == (TEXT, b"before")
        server.send_signal(signal.SIGTERM)
        assert reader.close_code() == 1001
        sock.sendall(frame(CLOSE, close_payload(1001)))
        assert sock.recv(100) == b""  # the connection's end, or the stream's (END_STREAM)
        assert getattr(sock, "goaway", 0) == 0
    assert server.wait(20) == 0
    assert server.wait_for_log(
        rf"WebSocket /held, HTTP/{wire}, 1 message\(s\) in, 1 out, close 1001"
    )


def test_a_client_that_never_reads_costs_only_its_own_connection(ws_server):
    """A ping flood from a client that reads nothing: the server stops reading it once its
    pongs back up, and answers everyone else meanwhile."""
    sock, _, _ = open_websocket(ws_server.address)
    with sock:
        sock.settimeout(0.5)
        flood = frame(PING, b"x" * 125) * 1000
        sent = 0
        try:
            for _ in range(400):  # at most 52 MB, stopped by the full buffers long before
                sock.sendall(flood)
                sent += 1
        except TimeoutError:
            pass
        assert sent < 400  # the server stopped taking more: nothing is queued for it
        with websockets_sync.connect(url(ws_server)) as other:
            other.send("still here")
            assert other.recv(timeout=CLIENT_TIMEOUT) == "still here"


def test_metrics_and_the_access_log_count_messages_and_closes(start_server):
    server = start_server("--mode", "http", "--metrics", "127.0.0.1:0", "--access-log",
                          "--log-format", "json")  # fmt: skip
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    with websockets_sync.connect(url(server, "/m")) as ws:
        for message in ("a", b"b", "c"):
            ws.send(message)
            ws.recv(timeout=CLIENT_TIMEOUT)
        ws.close(4000, "")
    server.wait_for_log(r'"close_code": 4000')
    samples = scraped(port)
    assert samples[("geventsrv_websocket_messages_total", (("type", "text"),))] == 2
    assert samples[("geventsrv_websocket_messages_total", (("type", "binary"),))] == 1
    assert samples[("geventsrv_websocket_closes_total", (("code", "other"),))] == 1
    entry = next(json.loads(line) for line in server.lines if '"close_code"' in line)
    assert (entry["websocket_messages_in"], entry["websocket_messages_out"]) == (3, 3)
    assert entry["target"] == "/m"


def test_the_page_is_served_and_connects_back_to_its_own_host(ws_server):
    with socket.create_connection(ws_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /.ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, page = data.partition(b"\r\n\r\n")
    assert b"Content-Type: text/html; charset=utf-8" in head
    assert b"new WebSocket(url)" in page and b"location.host" in page


# -- the fast path for whole frames, and its hand-over to wsproto -------------------------


def test_frames_split_anywhere_across_reads_are_echoed_whole(ws_server, wire):
    import time

    payload = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length field
    data = frame(BINARY, payload) + frame(TEXT, "☃ snow".encode())
    sock, reader, _ = open_websocket(ws_server.address, version=wire)
    with sock:
        for cut in (1, 3, 9, 40000, len(data) - 2):  # inside the head, the length, the payload
            sock.sendall(data[:cut])
            time.sleep(0.05)  # (only so that the pieces tend to arrive as separate reads)
            sock.sendall(data[cut:])
            assert reader.next() == (True, BINARY, payload)
            assert reader.next() == (True, TEXT, "☃ snow".encode())


def test_many_frames_in_one_write_then_a_fragment_then_more_come_back_in_order(ws_server, wire):
    frames = [frame(TEXT, f"m{i}".encode()) for i in range(20)]
    frames += [frame(PING, b"p"), frame(TEXT, b"frag", fin=False), frame(CONTINUATION, b"ment")]
    frames += [frame(BINARY, bytes([i])) for i in range(5)]
    seen = exchange_frames(ws_server, frames, wire)
    expected = [(TEXT, f"m{i}".encode()) for i in range(20)] + [(PONG, b"p"), (TEXT, b"fragment")]
    expected += [(BINARY, bytes([i])) for i in range(5)]
    assert [(op, data) for _, op, data in seen[:-1]] == expected and closed_with(seen) == 1000


def test_bad_utf8_after_good_frames_echoes_those_then_closes_1007(ws_server, wire):
    seen = exchange_frames(ws_server, [frame(TEXT, b"ok"), frame(TEXT, b"\xc3\x28")], wire)
    assert seen[0][1:] == (TEXT, b"ok") and closed_with(seen) == 1007


# -- what RFC 6455 measures and forbids, whichever path a frame takes ---------------------

#: A fragmented message first: every frame after it goes through wsproto, not the fast path.
HANDED_OVER = [frame(TEXT, b"hand", fin=False), frame(CONTINUATION, b"over")]


def closed_after(
    server, before: list[bytes], data: bytes, cut: int | None = None, version: str = "1.1"
) -> int | str | None:
    """Send ``before`` and then ``data`` (in two writes, split at ``cut``); the close code,
    or ``"echoed"`` if a message came back instead."""
    import time

    sock, reader, _ = open_websocket(server.address, version=version)
    with sock:
        sock.sendall(b"".join(before))
        if before:
            assert reader.next()[1:] == (TEXT, b"handover")
        if cut is not None:
            sock.sendall(data[:cut])
            time.sleep(0.005)  # (only so that the pieces tend to arrive as separate reads)
            data = data[cut:]
        sock.sendall(data)
        _, opcode, payload = reader.next()
        if opcode != CLOSE:
            return "echoed"
        return int.from_bytes(payload[:2], "big") if payload else None


@pytest.mark.parametrize("before", [[], HANDED_OVER], ids=["fast-path", "after-hand-over"])
@pytest.mark.parametrize(
    "text",
    ["é" + "a" * 99_999, "😀" * 25_001, "€" * 33_334],  # 100,001 / 100,004 / 100,002 bytes
    ids=["2-byte", "4-byte", "3-byte"],
)
@pytest.mark.parametrize("fragmented", [False, True])
def test_a_text_message_is_bounded_in_bytes_not_characters(
    ws_server, wire, before, text, fragmented
):
    """--ws-max-message is 100,000 here: each text holds at most 100,000 characters but
    more bytes, and RFC 6455 measures a payload in bytes."""
    data = text.encode()
    assert len(text) <= 100_000 < len(data)
    if fragmented:
        middle = len(data) // 2
        message = frame(TEXT, data[:middle], fin=False) + frame(CONTINUATION, data[middle:])
    else:
        message = frame(TEXT, data)
    assert closed_after(ws_server, before, message, version=wire) == 1009


@pytest.mark.parametrize("before", [[], HANDED_OVER], ids=["fast-path", "after-hand-over"])
def test_a_text_message_of_exactly_the_bound_in_bytes_is_echoed(ws_server, wire, before):
    data = ("é" + "a" * 99_998).encode()  # 100,000 bytes
    sock, reader, _ = open_websocket(ws_server.address, version=wire)
    with sock:
        sock.sendall(b"".join(before) + frame(TEXT, data))
        if before:
            assert reader.next()[1:] == (TEXT, b"handover")
        assert reader.next() == (True, TEXT, data)


NOT_MINIMAL = [
    frame(TEXT, b"short", length_bytes=2),  # 126: a 16-bit length under 126
    frame(BINARY, b"short", length_bytes=8),  # 127: a 64-bit length under 65,536
    frame(BINARY, b"m" * 200, length_bytes=8),
]


@pytest.mark.parametrize("before", [[], HANDED_OVER], ids=["fast-path", "after-hand-over"])
@pytest.mark.parametrize("data", NOT_MINIMAL, ids=["126-for-5", "127-for-5", "127-for-200"])
def test_a_length_not_minimally_encoded_is_refused_1002_split_anywhere(ws_server, before, data):
    """RFC 6455 5.2: the minimal number of bytes MUST be used to encode the length. The
    answer may not depend on what came before on the connection, nor on how it was read."""
    cuts = [None, *range(1, len(data))]  # whole, and cut after every byte
    assert {cut: closed_after(ws_server, before, data, cut) for cut in cuts} == dict.fromkeys(
        cuts, 1002
    )
