"""Chat mode over real sockets: `python -m geventsrv --mode chat`."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
from support import CLIENT_TIMEOUT, connect

JOIN = re.compile(rb"<announce> \S+ is connected as (<user\d+>)\.")


class ChatClient:
    """A chat participant: a socket plus a line buffer."""

    def __init__(self, address: tuple[str, int], timeout: float = CLIENT_TIMEOUT) -> None:
        self.sock = connect(address, timeout)
        self.buffer = b""
        first = self.line()
        match = JOIN.fullmatch(first.rstrip(b"\n"))
        assert match, first
        self.name = match.group(1).decode()
        self.already = self.line()
        assert self.already.startswith(b"<announce> already connected: ")

    def line(self) -> bytes:
        """The next line, with its newline; EOFError if the server closed first."""
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line + b"\n"

    def lines_until(self, wanted: bytes) -> list[bytes]:
        """Lines read up to and including ``wanted``."""
        seen = []
        while True:
            seen.append(self.line())
            if seen[-1] == wanted:
                return seen

    def say(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def chat_server(start_server):
    return start_server("--mode", "chat")


def test_three_clients_see_each_others_lines_in_order_and_never_their_own(chat_server):
    a, b, c = (ChatClient(chat_server.address) for _ in range(3))
    assert a.already == b"<announce> already connected: nobody.\n"
    assert c.already == f"<announce> already connected: {a.name}, {b.name}.\n".encode()
    a.say(b"first from a\nsecond from a\n")
    for listener in (b, c):
        seen = listener.lines_until(f"{a.name} second from a\n".encode())
        assert seen[-2:] == [
            f"{a.name} first from a\n".encode(),
            f"{a.name} second from a\n".encode(),
        ]
    b.say(b"from b\n")
    assert c.lines_until(f"{b.name} from b\n".encode())[-1].endswith(b"from b\n")
    lines_at_a = a.lines_until(f"{b.name} from b\n".encode())
    assert not any(line.startswith(a.name.encode()) for line in lines_at_a)  # never its own
    for client in (a, b, c):
        client.close()


def test_joins_and_leaves_are_announced(chat_server):
    a = ChatClient(chat_server.address)
    b = ChatClient(chat_server.address)
    assert a.line() == f"<announce> 127.0.0.1 is connected as {b.name}.\n".encode()
    b.close()
    assert a.line() == f"<announce> {b.name} is disconnected.\n".encode()
    a.close()


def test_binary_bytes_pass_through_unharmed(chat_server):
    a, b = ChatClient(chat_server.address), ChatClient(chat_server.address)
    payload = bytes(range(256)).replace(b"\n", b"") + b"\xff\xfe\x00\r"
    a.say(payload + b"\n")
    assert b.lines_until(f"{a.name} ".encode() + payload + b"\n")[-1].endswith(payload + b"\n")
    a.close()
    b.close()


def test_a_line_of_exactly_64_kib_is_delivered(chat_server):
    a, b = ChatClient(chat_server.address), ChatClient(chat_server.address)
    a.line()  # b's join
    a.say(b"w" * 65_536 + b"\n")
    assert b.line() == f"{a.name} ".encode() + b"w" * 65_536 + b"\n"
    a.close()
    b.close()


def test_a_line_is_delivered_only_once_complete(chat_server):
    a, b = ChatClient(chat_server.address), ChatClient(chat_server.address)
    a.line()  # b's join
    a.say(b"hel")
    b.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        b.line()
    b.sock.settimeout(CLIENT_TIMEOUT)
    a.say(b"lo\n")
    assert b.line() == f"{a.name} hello\n".encode()
    a.close()
    b.close()


def test_a_last_line_without_newline_is_delivered_when_its_sender_leaves(chat_server):
    a, b = ChatClient(chat_server.address), ChatClient(chat_server.address)
    a.say(b"goodbye")
    a.sock.shutdown(socket.SHUT_WR)
    assert b.line() == f"{a.name} goodbye\n".encode()
    assert b.line() == f"<announce> {a.name} is disconnected.\n".encode()
    a.close()
    b.close()


@pytest.mark.parametrize(
    "payload",
    [b"x" * 70_000, b"y" * 70_000 + b"\nafter\n", b"ok\n" + b"z" * 65_537 + b"\n"],
    ids=["unfinished", "complete-in-one-write", "after-a-short-line"],
)
def test_an_over_long_line_gets_an_error_and_a_close(chat_server, payload):
    """However the bytes arrive, no line over 64 KiB reaches anyone (lines before it do)."""
    a, b = ChatClient(chat_server.address), ChatClient(chat_server.address)
    a.line()  # b's join
    a.say(payload)
    assert a.line() == b"<error> line longer than 65536 bytes; closing.\n"
    assert a.sock.recv(1) == b""
    if payload.startswith(b"ok\n"):
        assert b.line() == f"{a.name} ok\n".encode()
    assert b.line() == f"<announce> {a.name} is disconnected.\n".encode()
    b.say(b"still here\n")  # the room goes on
    c = ChatClient(chat_server.address)
    assert c.already == f"<announce> already connected: {b.name}.\n".encode()
    for client in (a, b, c):
        client.close()


def test_a_client_that_does_not_read_is_dropped_and_others_keep_receiving(chat_server):
    slow = ChatClient(chat_server.address)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fast, talker = ChatClient(chat_server.address), ChatClient(chat_server.address)
    line = b"y" * 1000 + b"\n"
    count = 10_000  # 10 MB: past the slow client's socket buffers and its 1 MiB outbox
    received: list[int] = []
    progress = [0]  # lines the fast reader has had so far
    left = f"<announce> {slow.name} is disconnected.\n".encode()
    saw_slow_leave: list[bool] = []

    def read_fast() -> None:
        expected = f"{talker.name} ".encode() + line
        got = 0
        while got < count or not saw_slow_leave:
            text = fast.line()
            if text == expected:
                got += 1
                progress[0] = got
            elif text == left:
                saw_slow_leave.append(True)
        received.append(got)

    reader = threading.Thread(target=read_fast)
    reader.start()
    for batch in range(count // 100):
        # The talker keeps at most 500 lines (500 KB) ahead of the fast reader, so however
        # busy the machine, only the client that never reads outgrows its 1 MiB outbox.
        deadline = time.monotonic() + 60
        while progress[0] < batch * 100 - 400 and reader.is_alive():
            assert time.monotonic() < deadline, progress
            time.sleep(0.005)
        talker.say(line * 100)
    reader.join(60)
    assert received == [count]  # the fast reader got every line
    assert saw_slow_leave == [True]  # ... and saw the slow one go
    chat_server.wait_for_log(rf"{re.escape(slow.name)} \(.*\): dropped, not reading")
    for client in (slow, fast, talker):
        client.close()


def test_200_concurrent_chatters_deliver_every_line(chat_server):
    chatters, lines_each = 200, 5
    joined = threading.Barrier(chatters, timeout=60)
    counts: dict[str, dict[str, list[int]]] = {}
    failures: list[str] = []

    def chatter(index: int) -> None:
        try:
            client = ChatClient(chat_server.address, timeout=60)
        except Exception as exc:
            failures.append(f"{index}: {exc!r}")
            joined.abort()
            return
        try:
            joined.wait()  # everyone is in the room before anyone speaks
            client.say(b"".join(b"line %d\n" % n for n in range(lines_each)))
            heard: dict[str, list[int]] = {}
            expected = (chatters - 1) * lines_each
            total = 0
            while total < expected:
                line = client.line()
                if line.startswith(b"<user"):
                    sender, text = line.split(b" ", 1)
                    heard.setdefault(sender.decode(), []).append(int(text.split()[1]))
                    total += 1
            counts[client.name] = heard
            time.sleep(0.5)  # let the others finish reading before anyone leaves
        except Exception as exc:
            failures.append(f"{index}: {exc!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=chatter, args=(i,)) for i in range(chatters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:5]
    assert len(counts) == chatters
    for name, heard in counts.items():
        assert name not in heard  # never its own lines
        assert len(heard) == chatters - 1
        assert all(numbers == list(range(lines_each)) for numbers in heard.values())
    delivered = sum(len(numbers) for heard in counts.values() for numbers in heard.values())
    assert delivered == chatters * (chatters - 1) * lines_each  # 199,000 lines, every one


def test_a_listener_stays_while_the_room_talks_and_idles_out_when_it_is_silent(start_server):
    server = start_server("--mode", "chat", "--idle-timeout", "1")
    lurker, talker = ChatClient(server.address), ChatClient(server.address)
    lurker.line()  # talker's join
    for n in range(8):  # 2.4 s of talk: longer than the idle timeout
        talker.say(b"tick %d\n" % n)
        assert lurker.line() == f"{talker.name} tick {n}\n".encode()
        time.sleep(0.3)
    talker.close()
    assert lurker.line() == f"<announce> {talker.name} is disconnected.\n".encode()
    started = time.monotonic()
    with pytest.raises(EOFError):
        lurker.line()  # silence: closed by the idle timeout
    assert time.monotonic() - started < 3
    lurker.close()


def test_outbox_holds_at_most_its_limit_and_hands_everything_over_at_once():
    from geventsrv.modes.chat import Outbox

    box = Outbox(limit=10)
    assert box.put(b"hello") and box.put(b"world")
    assert not box.put(b"!")  # 11 bytes would pass the limit: refused, nothing queued
    assert box.size == 10
    assert box.take() == b"helloworld" and box.size == 0
    box.put_last(b"bye, too slow")  # a final word goes in whatever the limit
    assert box.closed and box.put(b"ignored")  # closed: accepts and drops
    assert box.take() == b"bye, too slow"
    assert box.take() == b""  # closed and empty: the writer's signal to finish


def test_outbox_take_waits_for_a_put_from_another_greenlet():
    import gevent

    from geventsrv.modes.chat import Outbox

    box = Outbox()
    taker = gevent.spawn(box.take)
    gevent.sleep(0)
    assert not taker.ready()  # nothing yet: parked
    box.put(b"line\n")
    assert taker.get(timeout=5) == b"line\n"
    closer = gevent.spawn(box.take)
    gevent.sleep(0)
    box.close()
    assert closer.get(timeout=5) == b""
