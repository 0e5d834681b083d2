"""Lesson 7: one loop on epoll for many clients: selectors, gevent's hub, and C10k.

What it shows
    A group chat server on the ``selectors`` module, one thread, in a few
    dozen lines, without the two classic mistakes: it never watches a socket
    for writing unless it has something queued (watching always makes the
    loop spin: every socket is always writable), and each client's queue has
    a limit (a client that never reads is disconnected, instead of growing
    the server's memory without end). Then gevent: its hub runs the same
    kind of loop, on the same epoll, and ``/proc`` shows each server's epoll
    watching its sockets. The system calls per message are counted for both
    (with ``perf``, where the kernel lets it). Last, the C10k problem told
    with this project's lab: threads against event loops at 10,000
    connections.

Read first
    Lesson 6 (``io_models``): non-blocking sockets, select and epoll. Next:
    lesson 8 (``asyncio``): another event loop, with async/await.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
import time
from typing import Any

from geventsrv.tutorial._narrate import Narrator
from geventsrv.tutorial._programs import running_program

SUMMARY = "a selectors chat server done right; gevent's hub on the same epoll; C10k in numbers"
SUMMARY_ZH = "用 selectors 正确写出的聊天服务器；同样跑在 epoll 上的 gevent hub；C10k 的实测数字"

MAX_LINE = 1024  # a longer line is an abuse: the client is dropped
MAX_BACKLOG = 64 * 1024  # bytes queued for one client before it counts as too slow


class ChatRoom:
    """Every line a client sends goes to every client (the sender too), one thread."""

    def __init__(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, data=None)
        self.pending: dict[socket.socket, bytearray] = {}  # unsent bytes per client
        self.partial: dict[socket.socket, bytes] = {}  # an unfinished line per client
        self.wakeups = 0
        self.dropped: list[str] = []

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            events = self.selector.select(timeout=0.05)
            self.wakeups += bool(events)
            for key, mask in events:
                sock: Any = key.fileobj
                if key.data is not None and sock not in self.pending:
                    continue  # dropped earlier in this round
                if key.data is None:
                    conn, _ = sock.accept()
                    conn.setblocking(False)
                    # Bound the kernel's buffer too (it can grow to megabytes), so
                    # a client that does not read shows up in its queue soon.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
                    self.selector.register(conn, selectors.EVENT_READ, data="client")
                    self.pending[conn], self.partial[conn] = bytearray(), b""
                    continue
                if mask & selectors.EVENT_WRITE:
                    self.flush(sock)
                if mask & selectors.EVENT_READ and sock in self.pending:
                    self.read(sock)

    def read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except ConnectionError:
            data = b""
        if not data:
            return self.drop(conn, "closed")
        *lines, rest = (self.partial[conn] + data).split(b"\n")
        if len(rest) > MAX_LINE:
            return self.drop(conn, "line too long")
        self.partial[conn] = rest
        for line in lines:
            for client in list(self.pending):
                self.send(client, line + b"\n")

    def send(self, conn: socket.socket, data: bytes) -> None:
        queue = self.pending[conn]
        if not queue:  # nothing waiting: try the socket first, queue only what it refuses
            try:
                data = data[conn.send(data) :]
            except BlockingIOError:
                pass
            except ConnectionError:
                return self.drop(conn, "reset")
        queue += data
        if len(queue) > MAX_BACKLOG:
            return self.drop(conn, "too slow")
        if queue:  # watch for writability only while something waits
            self.selector.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, "client")

    def flush(self, conn: socket.socket) -> None:
        queue = self.pending[conn]
        try:
            del queue[: conn.send(queue)]
        except BlockingIOError:
            return
        except ConnectionError:
            return self.drop(conn, "reset")
        if not queue:
            self.selector.modify(conn, selectors.EVENT_READ, "client")

    def drop(self, conn: socket.socket, why: str) -> None:
        self.selector.unregister(conn)
        del self.pending[conn], self.partial[conn]
        conn.close()
        self.dropped.append(why)


def start_room(listener: socket.socket) -> tuple[ChatRoom, threading.Event, threading.Thread]:
    room, stop = ChatRoom(listener), threading.Event()
    thread = threading.Thread(target=room.serve, args=(stop,), daemon=True)
    thread.start()
    return room, stop, thread


def _read_lines(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.splitlines()


def chat_demo(lines: int = 2000) -> dict[str, Any]:
    """alice talks, bob reads everything, sloth never reads: sloth is dropped, bob misses nothing.

    Returns wake-ups while idle, lines bob got (and whether intact), echoes
    alice saw of her own lines, and who was dropped and why.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    room, stop, thread = start_room(listener)
    try:
        sloth = socket.socket()
        sloth.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window
        sloth.connect(address)
        alice = socket.create_connection(address, timeout=10)
        bob = socket.create_connection(address, timeout=10)
        time.sleep(0.1)  # all three accepted before the first line
        idle_before = room.wakeups
        time.sleep(0.2)  # nobody says anything: does the loop sleep?
        idle_wakeups = room.wakeups - idle_before
        line = b"x" * 99 + b"\n"
        heard: list[bytes] = []
        reader = threading.Thread(target=lambda: heard.extend(_read_lines(bob, lines)))
        reader.start()
        echoes = 0
        with alice.makefile("rb") as alice_reads:
            for _ in range(lines):  # alice types a line and sees it come back
                alice.sendall(line)
                echoes += alice_reads.readline() == line
        reader.join(10)
        for sock in (alice, bob, sloth):
            sock.close()
        return {
            "idle_wakeups": idle_wakeups,
            "bob": len(heard),
            "bob_intact": all(item + b"\n" == line for item in heard),
            "alice": echoes,
            "dropped": list(room.dropped),
            "wakeups": room.wakeups,
        }
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def spinning_loop(seconds: float = 0.2) -> int:
    """The classic mistake: one idle client watched for writing too. Wake-ups in ``seconds``."""
    ours, peer = socket.socketpair()
    with ours, peer, selectors.DefaultSelector() as selector:
        selector.register(ours, selectors.EVENT_READ | selectors.EVENT_WRITE)
        wakeups, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            wakeups += bool(selector.select(timeout=0.05))  # writable: returns at once
    return wakeups


# -- the two servers as programs, looked at from outside -----------------------------


#: The two servers the lesson runs as programs: this module's chat room, lesson 5's echo.
PROGRAMS = [
    ("selectors chat", "geventsrv.tutorial.event_loops"),
    ("gevent echo", "geventsrv.tutorial.echo_server"),
]


def epoll_watches(pid: int) -> list[int]:
    """For each epoll instance the process holds, how many descriptors it watches (/proc)."""
    counts = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                counts.append(sum(1 for line in info if line.startswith("tfd:")))
        except OSError:
            continue
    return counts


#: A client that sends a 64-byte line, waits for it to come back, pauses 1 ms (so
#: the server always waits for it, as servers mostly do), ``count`` times.
CLIENT = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    for _ in range(count):
        sock.sendall(b"y" * 63 + b"\\n")
        got = b""
        while not got.endswith(b"\\n"):
            got += sock.recv(4096)
        time.sleep(0.001)
"""


def syscalls_per_message(
    pid: int, port: int, count: int, method: str = "auto"
) -> dict[str, float] | str:
    """System calls per round trip while a client makes ``count`` of them; or why not.

    ``method``: ``perf`` (the kernel's counters, no cost to the server),
    ``strace`` (``strace -c``), or ``auto``: perf where it can count, else strace.
    """
    from geventsrv.bench import syscalls

    client = [sys.executable, "-c", CLIENT, str(port), str(count)]
    reasons = []
    counts: dict[str, int] | None = None
    if method in ("auto", "perf"):
        if why := syscalls.available():
            reasons.append(why)
        else:
            counts = syscalls.count_during([pid], client)
    if counts is None and method in ("auto", "strace"):
        if why := syscalls.strace_unavailable():
            reasons.append(why)
        else:
            counts = syscalls.count_with_strace(pid, client)
    if counts is None:
        return "; ".join(reasons)
    wanted = ("total", "epoll_wait", "recvfrom", "sendto", "getsockopt", "getpid")
    return {name: counts.get(name, 0) / count for name in wanted}


#: The lab at 10,000 connections, 1 KiB messages (medians of 3 rounds), from
#: docs/bench/results.json; a test keeps these equal to that file.
C10K = {
    "threads": {"requests_per_s": 1024.0, "p99_us": 1178791.123851335, "kib": 22.198},
    "selectors": {"requests_per_s": 92506.0, "p99_us": 162754.79141900392, "kib": 0.3748},
    "asyncio-streams": {"requests_per_s": 39089.0, "p99_us": 348014.70026317565, "kib": 6.9884},
    "geventsrv": {"requests_per_s": 78772.0, "p99_us": 247706.53553245345, "kib": 9.536},
}
C10K_MACHINE = "AMD EPYC, 2 cores, Linux 6.18, CPython 3.11.7, gevent 26.9.0 (libev)"
C10K_COMMAND = "python -m geventsrv.bench --sizes 1024 --connections 10000"


def run(out: Narrator, round_trips: int = 300) -> dict[str, Any]:
    """Narrate the lesson; return what was measured, for the tests."""
    out.title(
        "Lesson 7: one loop on epoll for many clients",
        "第 7 课：一个跑在 epoll 上的循环，服务众多客户端",
    )
    out.say(
        """
        Lesson 6 ended with epoll: ask the kernel which sockets are ready, then
        make only the calls that will not wait. A server built on that is one
        loop: wait for readiness, handle what is ready, repeat.
        """,
        """
        第 6 课以 epoll 收尾：先问内核哪些 socket 已经就绪，再只做那些不会等待的调用。
        在此之上搭起来的服务器就是一个循环：等待就绪，处理就绪的，如此往复。
        这个循环就是事件循环（event loop）。
        """,
    )

    out.step(
        "A group chat server on selectors (level-triggered epoll underneath)",
        "基于 selectors 的群聊服务器（底层是水平触发的 epoll）",
    )
    out.code(ChatRoom)
    result: dict[str, Any] = {"chat": chat_demo()}
    chat = result["chat"]
    result["spinning"] = spinning_loop()
    idle, spinning = chat["idle_wakeups"], result["spinning"]
    out.trace(
        f"idle for 0.2 s with 3 clients: {idle} wake-ups",
        f"3 个客户端空闲 0.2 秒：唤醒 {idle} 次",
    )
    out.trace(
        f"the classic version, which watches an idle client for writing: "
        f"{spinning:,} wake-ups in 0.2 s",
        f"经典写法一直监视空闲客户端是否可写：0.2 秒里唤醒 {spinning:,} 次",
    )
    bob, alice, woke = chat["bob"], chat["alice"], chat["wakeups"]
    out.trace(
        f"alice sent 2,000 lines: bob got {bob:,} intact, alice saw her own "
        f"{alice:,}; the loop woke {woke:,} times",
        f"alice 发了 2,000 行：bob 完整收到 {bob:,} 行，alice 看到自己的 {alice:,} 行；"
        f"循环唤醒了 {woke:,} 次",
    )
    if chat["dropped"]:
        reason = chat["dropped"][0]
        out.trace(f"sloth, who never reads: dropped, {reason}", f"从不读的 sloth：已断开，{reason}")
    else:
        out.trace("sloth, who never reads: not dropped", "从不读的 sloth：没有断开")
    out.say(
        """
        A socket is writable whenever its send buffer has room, which is almost
        always: watch it only while you have bytes queued for it. And a client
        that never reads (sloth, with a 4 KiB receive window) would make its
        queue grow for ever; past 64 KiB it is dropped, and everyone else carries
        on. The classic version of this server has neither guard.
        """,
        """
        只要发送缓冲区还有空间，socket 就是可写的，而这几乎总是成立：所以只在确有
        字节排队等着发给它时，才监视它是否可写。还有，一个从不读的客户端（sloth，
        接收窗口只有 4 KiB）会让它的队列无限增长；超过 64 KiB 就断开它，其他人照常进行。
        这个服务器的经典写法，这两道防护都没有。
        """,
    )

    out.step(
        "gevent's hub is the same loop: libev on epoll",
        "gevent 的 hub 是同样的循环：跑在 epoll 上的 libev",
    )
    import gevent

    backend = gevent.get_hub().loop.backend
    result["backend"] = backend
    out.trace(f"gevent.get_hub().loop.backend == {backend!r}")  # code, in any language
    watches: dict[str, list[int]] = {}
    counted: dict[str, dict[str, float] | str] = {}
    for name, module in PROGRAMS:  # each started once, looked at in both ways
        with running_program(module) as (proc, port, _):
            clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
            time.sleep(0.3)
            watches[name] = epoll_watches(proc.pid)
            for sock in clients:
                sock.close()
            counted[name] = syscalls_per_message(proc.pid, port, round_trips)
    for name, watched in watches.items():
        out.trace(
            f"{name} with 3 clients: its epoll instance(s) watch {watched} descriptors "
            "(/proc/PID/fdinfo)",
            f"{name}，3 个客户端：它的 epoll 实例监视着 {watched} 个描述符（/proc/PID/fdinfo）",
        )
    result["watches"] = watches
    out.say(
        """
        The listener and each connection are registered with an epoll instance in
        both; gevent's one more is libev's own wake-up descriptor.
        The difference is what runs when a socket is ready: a callback in the
        selectors loop; in gevent, the greenlet that was waiting in recv(), resumed
        where it stopped.
        """,
        """
        两者都把监听 socket 和每个连接注册到一个 epoll 实例上；gevent 多出的那一个，
        是 libev 自己用来唤醒的描述符。
        区别在于 socket 就绪时运行的是什么：selectors 循环里是一个回调函数；
        gevent 里则是那个在 recv() 中等待的 greenlet，从它停下的地方接着运行。
        """,
    )

    out.step(
        "System calls per message, counted (perf, or strace where perf cannot)",
        "数一数每条消息的系统调用（用 perf；perf 用不了时用 strace）",
    )
    for name, figures in counted.items():
        if isinstance(figures, str):
            out.trace(f"{name}: not counted here: {figures}", f"{name}：这里没法统计：{figures}")
        else:
            shown = ", ".join(f"{k} {v:.1f}" for k, v in figures.items() if k != "total" and v)
            total = figures["total"]
            out.trace(
                f"{name}: {total:.1f} per message ({shown})",
                f"{name}：每条消息 {total:.1f} 次（{shown}）",
            )
    result["syscalls"] = counted
    out.say(
        """
        The client pauses 1 ms between messages, so each server waits for every
        message, as servers mostly do. The selectors loop: epoll_wait, recv, send.
        The monkey-patched gevent socket first tries recv and gets EAGAIN (an
        exception built and caught), switches to the hub, whose epoll_wait
        returns (libev then calls getpid() to check for a fork, once per loop
        iteration), tries recv again, sends, and sendall() asks getsockopt()
        for the send buffer size.
        geventsrv's default socket waits on its watcher before reading and sends
        without asking (the lab's "fast path" section measures it). To count a
        server of your own: strace -c -f -p PID while a client runs.
        """,
        """
        客户端每两条消息之间停 1 毫秒，所以服务器每条消息都要等，大多数服务器平时正是
        如此。selectors 循环：epoll_wait、recv、send。打过补丁的 gevent socket 先试
        recv，得到 EAGAIN（构造并捕获一个异常），切换到 hub，hub 的 epoll_wait 返回
        （之后 libev 每轮循环调用一次 getpid() 检查是否发生过 fork），再试 recv，发送，
        而 sendall() 还要用 getsockopt() 查询发送缓冲区的大小。
        geventsrv 默认的 socket 先在自己的 watcher 上等待再读，发送时也不去查询
        （实验室文档的 "fast path" 一节有测量）。要统计你自己的服务器：在客户端运行时
        执行 strace -c -f -p PID。
        """,
    )

    out.step(
        "C10k: 10,000 connections, threads against event loops",
        "C10k：一万个连接，线程对事件循环",
    )
    out.trace(
        f"{'server':16} {'requests/s':>11} {'p99':>9} {'memory per connection':>22}",
        f"{'服务器':14} {'请求/秒':>9} {'p99':>9} {'每连接内存':>17}",
    )
    for name, row in C10K.items():
        out.trace(f"{name:16} {row['requests_per_s']:>11,.0f} {row['p99_us'] / 1000:>7,.0f} ms "
                  f"{row['kib']:>18.1f} KiB")  # fmt: skip
    out.trace(f"measured on {C10K_MACHINE}", f"测量环境：{C10K_MACHINE}")
    out.trace(f"reproduce: {C10K_COMMAND}", f"复现命令：{C10K_COMMAND}")
    out.say(
        """
        The C10k problem (serving 10,000 clients at once on one machine) is why
        event loops exist. A thread per connection pays a stack and a kernel
        thread for every client, and the scheduler switches among 10,000 of them;
        one loop on epoll pays for activity, not for the number of clients. The
        ranking among the event loops depends on the machine (run the command on
        yours); the gap to threads is the point.
        """,
        """
        C10k 问题（一台机器同时服务一万个客户端）正是事件循环存在的理由。每个连接一个
        线程，就要为每个客户端付出一个栈和一个内核线程，调度器还要在一万个线程之间切换；
        一个跑在 epoll 上的循环，付出的代价取决于活跃程度，而不是客户端的数量。
        几种事件循环之间的排名取决于机器（请在你自己的机器上运行那条命令）；
        要看的是它们与线程之间的差距。
        """,
    )
    result["c10k"] = C10K
    return result


def main(port: int = 0) -> None:
    """Run the chat room as a program (the lesson looks at it from outside)."""
    listener = socket.create_server(("127.0.0.1", port))
    print("listening on port", listener.getsockname()[1], flush=True)
    ChatRoom(listener).serve(threading.Event())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
