"""Lesson 9: protocols over greenlets, with sans-IO parsers.

What it shows
    A sans-IO parser (h11 for HTTP/1.1, wsproto for WebSocket) turns bytes into
    events and events into bytes, and never touches a socket. A greenlet's
    blocking loop is the other half: ``recv()`` the bytes, hand them to the
    parser, ``sendall()`` what it answers. The same eight-line loop serves
    HTTP/1.1 keep-alive and a WebSocket echo; the trace of every switch (as in
    lesson 2) shows the connection's greenlet parking in ``recv()`` and
    nowhere else. geventsrv's own ``--mode http`` has this shape, with llhttp
    as the parser: shown last, keep-alive and a WebSocket on one connection.

Read first
    Lesson 2 (``tracing``) for the trace, lesson 5 (``echo_server``) for the
    loop. The real thing: ``geventsrv/http/h1read.py`` and
    ``geventsrv/http/websocket.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import h11
from gevent import socket as gsocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from geventsrv.testing.process import ServerProcess
from geventsrv.tutorial._narrate import Narrator
from geventsrv.tutorial._timeline import SwitchRecorder

SUMMARY = "sans-IO parsers and a greenlet: one blocking loop serves HTTP keep-alive and WebSocket"
SUMMARY_ZH = "sans-IO 解析器加 greenlet：一个阻塞式循环同时服务 HTTP keep-alive 和 WebSocket"


class SansIO(Protocol):
    """What the loop needs of a protocol: bytes in, bytes out, and whether it is over."""

    done: bool

    def feed(self, data: bytes) -> bytes: ...


def serve(sock: Any, protocol: SansIO) -> None:
    """A connection's whole I/O: what arrives goes to the parser, what it answers goes out."""
    while True:
        data = sock.recv(65536)  # the one place this greenlet waits
        reply = protocol.feed(data)  # the parser never sees the socket
        if reply:
            sock.sendall(reply)
        if not data or protocol.done:
            return


class HttpHello:
    """HTTP/1.1 on h11: each request answered with its own path, the connection kept alive."""

    def __init__(self) -> None:
        self.http = h11.Connection(h11.SERVER)
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.http.receive_data(data)  # b"" means the client closed
        out = b""
        while True:
            event = self.http.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                return out
            if isinstance(event, h11.Request):
                body = b"you asked for " + event.target + b"\n"
                length = [("Content-Length", str(len(body)))]
                out += self.http.send(h11.Response(status_code=200, headers=length))
                out += self.http.send(h11.Data(data=body))
                out += self.http.send(h11.EndOfMessage())
            elif isinstance(event, h11.EndOfMessage):
                self.http.start_next_cycle()  # keep-alive: ready for the next request
            elif isinstance(event, h11.ConnectionClosed):
                self.done = True
                return out


class WebSocketEcho:
    """A WebSocket echo on wsproto: the upgrade, then every message back, then the close."""

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.ws.receive_data(data or None)  # None means the client closed
        out = b""
        for event in self.ws.events():
            if isinstance(event, Request):
                out += self.ws.send(AcceptConnection())
            elif isinstance(event, (TextMessage, BytesMessage)):
                out += self.ws.send(event)  # the message itself, back
            elif isinstance(event, Ping):
                out += self.ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    out += self.ws.send(event.response())  # the close handshake's answer
                self.done = True
        return out


class WatchedSocket:
    """A socket that notes, for every call, the span of the switch trace it covered."""

    def __init__(self, sock: Any, timeline: Any) -> None:
        self.sock, self.timeline = sock, timeline
        self.calls: list[tuple[str, int, int]] = []  # (name, first switch, after last)

    def _call(self, name: str, *args: Any) -> Any:
        first = len(self.timeline.switches)
        try:
            return getattr(self.sock, name)(*args)
        finally:
            self.calls.append((name, first, len(self.timeline.switches)))

    def recv(self, size: int) -> bytes:
        return self._call("recv", size)  # type: ignore[no-any-return]

    def sendall(self, data: bytes) -> None:
        self._call("sendall", data)


def read_http_response(sock: Any, client: h11.Connection) -> tuple[int, bytes]:
    """One response off ``sock``, parsed by an h11 client: its status and its body."""
    status, body = 0, b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            client.start_next_cycle()
            return status, body


def websocket_round(sock: Any, target: str, messages: list[str]) -> list[str]:
    """Upgrade ``sock`` to a WebSocket (wsproto as the client), send ``messages``, close;
    return what came back."""
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host="localhost", target=target)))
    echoed: list[str] = []
    closing = False
    while not closing:
        ws.receive_data(sock.recv(65536) or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):  # now messages may go
                out = b"".join(ws.send(TextMessage(data=text)) for text in messages)
                sock.sendall(out + ws.send(CloseConnection(code=1000)))
            elif isinstance(event, TextMessage):
                echoed.append(event.data)
            elif isinstance(event, CloseConnection):
                closing = True
    return echoed


def over_one_connection(
    make_protocol: Callable[[], SansIO], client: Callable[[Any], Any], title: str
) -> dict[str, Any]:
    """Serve one connection with :func:`serve` in a greenlet while ``client`` talks to it;
    every switch recorded."""
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    with SwitchRecorder(title) as timeline:
        watched: list[WatchedSocket] = []

        def connection() -> None:
            sock, _ = listener.accept()
            watched.append(WatchedSocket(sock, timeline))
            with sock:
                serve(watched[0], make_protocol())

        def talk() -> Any:
            with gsocket.create_connection(listener.getsockname(), timeout=5) as sock:
                return client(sock)

        server = gevent.spawn(connection)
        server.name = "connection"
        talker = gevent.spawn(talk)
        talker.name = "client"
        gevent.joinall([server, talker], timeout=10, raise_error=True)
    listener.close()
    calls = watched[0].calls

    def away(first: int, last: int) -> int:  # the connection's switches to the hub, in a span
        return sum(origin == "connection" for _, _, origin, _ in timeline.switches[first:last])

    in_calls = {name: 0 for name in ("recv", "sendall")}
    for name, first, last in calls:
        in_calls[name] += away(first, last)
    return {
        "answer": talker.value,
        "timeline": timeline,
        "calls": [name for name, _, _ in calls],
        # From serve()'s first socket call to its last: the waits of the loop itself.
        "switches_away_serving": away(calls[0][1], calls[-1][2]),
        "switches_away_in": in_calls,
    }


def three_requests(sock: Any) -> list[tuple[int, bytes]]:
    """The HTTP client: three requests, one after another, on one connection."""
    client = h11.Connection(h11.CLIENT)
    answers = []
    for path in ("/one", "/two", "/three"):
        request = h11.Request(method="GET", target=path, headers=[("Host", "localhost")])
        sock.sendall(client.send(request) + client.send(h11.EndOfMessage()))
        answers.append(read_http_response(sock, client))
    return answers


def geventsrv_on_one_connection() -> dict[str, Any]:
    """Two requests, then a WebSocket, on one connection to ``python -m geventsrv --mode http``."""
    server = ServerProcess("--mode", "http", "--port", "0").wait_listening()
    try:
        with socket.create_connection(server.address, timeout=5) as sock:
            client = h11.Connection(h11.CLIENT)
            numbers = []
            for path in ("/first", "/second"):
                request = h11.Request(method="GET", target=path, headers=[("Host", "lesson")])
                sock.sendall(client.send(request) + client.send(h11.EndOfMessage()))
                status, body = read_http_response(sock, client)
                reflection = json.loads(body)
                numbers.append((status, reflection["request"]["path"], reflection["server"]))
            echoed = websocket_round(sock, "/chat", ["over the same connection"])
    finally:
        server.stop()
    return {"requests": numbers, "echoed": echoed}


def run(out: Narrator) -> dict[str, Any]:
    """Narrate the lesson; return what it measured, for the tests."""
    out.title("Lesson 9: protocols over greenlets", "第 9 课：greenlet 之上的协议")
    out.say(
        """
        A sans-IO parser does the protocol and nothing else: bytes go in, events come
        out; events go in, bytes come out. It never reads a socket, never waits, never
        sleeps. The waiting is the greenlet's: one blocking loop around the parser.
        """,
        """
        sans-IO 解析器只管协议本身：字节进去，事件出来；事件进去，字节出来。
        它从不读 socket，从不等待，也从不睡眠。等待是 greenlet 的事：
        围绕解析器的一个阻塞式循环。
        """,
    )
    out.step("The loop, and two parsers for it", "循环，以及给它用的两个解析器")
    out.code(serve)
    out.code(HttpHello)
    out.code(WebSocketEcho)
    by_hand = HttpHello().feed(b"GET /by-hand HTTP/1.1\r\nHost: lesson\r\n\r\n")
    out.say(
        "Fed by hand, with no socket anywhere, the HTTP parser answers:",
        "手工喂给它一个请求，周围没有任何 socket，HTTP 解析器照样作答：",
    )
    for line in by_hand.decode().splitlines():
        out.trace(line)

    out.step(
        "HTTP/1.1 keep-alive: three requests on one connection",
        "HTTP/1.1 keep-alive：一个连接上的三个请求",
    )
    http = over_one_connection(HttpHello, three_requests, "HTTP keep-alive on h11")
    for status, body in http["answer"]:
        out.trace(f"{status} {body.decode().strip()}")
    for _, event, origin, target in http["timeline"].switches:
        out.trace(f"{event:6} {origin:>12} -> {target}")
    serving, in_recv = http["switches_away_serving"], http["switches_away_in"]["recv"]
    in_sendall = http["switches_away_in"]["sendall"]
    out.say(
        f"""
        One connection, one greenlet, three requests: after each response the loop goes
        back to recv(), and h11 starts its next cycle. While serve() ran, the
        connection's greenlet switched to the hub {serving} time(s), {in_recv} inside recv():
        it waits for the next bytes and for nothing else (its other switches above are
        the wait in accept() and its end). Inside sendall(): {in_sendall}
        (a reply waits only when the kernel's send buffer is full). h11 itself never
        switched: a parser has nothing to wait for.
        """,
        f"""
        一个连接，一个 greenlet，三个请求：每次回复之后，循环回到 recv()，h11 开始下一轮。
        serve() 运行期间，这个连接的 greenlet 切换到 hub {serving} 次，其中 {in_recv} 次在
        recv() 里：它只等下一批字节，别的什么都不等（上面其余的切换，是它在 accept() 里的
        等待和它的结束）。在 sendall() 里切换了 {in_sendall} 次（只有内核的发送缓冲区满了，
        回复才需要等）。h11 本身从不切换：解析器没有什么可等的。
        """,
    )

    out.step("A WebSocket echo on the same loop", "同一个循环上的 WebSocket 回显")
    ws = over_one_connection(
        WebSocketEcho,
        lambda sock: websocket_round(sock, "/", ["hello", "sans-IO"]),
        "WebSocket echo on wsproto",
    )
    for text in ws["answer"]:
        out.trace(f"echoed: {text}")
    ws_serving, ws_in_recv = ws["switches_away_serving"], ws["switches_away_in"]["recv"]
    out.say(
        f"""
        serve() did not change, only the object it feeds. The upgrade, the messages and
        the close handshake are wsproto's; the waiting is still recv()'s: {ws_in_recv} of
        the {ws_serving} switch(es) to the hub while serving. This is why sans-IO parsers
        and greenlets fit: the parser is plain code, and the loop that drives it is
        plain blocking code, with neither callbacks nor 'await'.
        """,
        f"""
        serve() 一个字没改，改的只是喂给它的对象。协议升级、消息、关闭握手都由 wsproto
        处理；等待仍然是 recv() 的事：服务期间切换到 hub 的 {ws_serving} 次里，有 {ws_in_recv} 次
        在 recv() 里。这就是 sans-IO 解析器与 greenlet 相得益彰的原因：解析器是普通代码，
        驱动它的循环是普通的阻塞式代码，既不需要回调，也不需要 'await'。
        """,
    )

    out.step(
        "geventsrv's own --mode http: the same shape, with llhttp",
        "geventsrv 自己的 --mode http：同样的结构，解析器换成 llhttp",
    )
    own = geventsrv_on_one_connection()
    for status, path, where in own["requests"]:
        number = where["connection"]
        out.trace(
            f"{status} {path}: served on connection {number}",
            f"{status} {path}：由第 {number} 号连接服务",
        )
    for text in own["echoed"]:
        out.trace(f"echoed: {text}")
    out.say(
        """
        Two requests and then a WebSocket, on one connection: the reflection names the
        same connection each time. In geventsrv/http/h1read.py, RequestReader feeds
        llhttp (through httptools) whatever recv() returns and hands the handler whole
        requests; at an upgrade, http/websocket.py takes the same socket and loop over
        to WebSocket frames. One greenlet per connection, blocking calls, and a parser
        that never touches the socket.
        """,
        """
        一个连接上先是两个请求，然后是一个 WebSocket：每一次，反射结果里写的都是同一个连接。
        在 geventsrv/http/h1read.py 里，RequestReader 把 recv() 返回的一切交给 llhttp
        （通过 httptools），再把完整的请求交给处理函数；遇到协议升级时，http/websocket.py
        接过同一个 socket 和同一个循环，改为处理 WebSocket 帧。每个连接一个 greenlet，
        阻塞式调用，外加一个从不碰 socket 的解析器。
        """,
    )
    return {"by_hand": by_hand, "http": http, "websocket": ws, "geventsrv": own}
