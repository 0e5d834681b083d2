"""Lesson 6: IO models, from a blocking ``recv`` to epoll.

What it shows
    A read has two phases: waiting until data is there, then copying it
    from the kernel into the program. A *blocking* call does both and keeps
    the thread for the wait; a *non-blocking* call returns at once and
    raises ``BlockingIOError`` (EAGAIN) when there is nothing yet, so a
    program that just retries burns a core. (Synchronous vs asynchronous is
    another question: whether the call gives the result itself, or the
    result comes later by a callback or a future. gevent makes synchronous,
    blocking-looking calls that wait without keeping the thread.) IO
    multiplexing asks the kernel which of many sockets are ready: ``select``
    (at most FD_SETSIZE = 1024 descriptor *numbers*), ``poll`` and ``epoll``
    (no such ceiling). epoll reports a ready socket on every call while data
    remains (level-triggered) or once per arrival (edge-triggered, where the
    program must read until EAGAIN). Every claim is run and counted here.

Read first
    Lesson 5 (``echo_server``): the server these models sit under. Next:
    lesson 7 (``event_loops``): one loop on epoll for many clients, with
    ``selectors``, and gevent's hub on the same epoll.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import select
import socket
import threading
from typing import Any

from geventsrv.tutorial._narrate import Narrator, stopwatch

SUMMARY = "blocking and non-blocking reads, select's 1024 ceiling, poll/epoll, level vs edge"
SUMMARY_ZH = "阻塞与非阻塞读、select 的 1024 上限、poll/epoll、水平触发与边缘触发"

#: select()'s fixed set size on Linux: descriptors numbered this or higher cannot be watched.
FD_SETSIZE = 1024


def blocking_read(delay: float) -> dict[str, float]:
    """A blocking ``recv`` on a socket whose peer sends after ``delay`` seconds.

    Returns how long the call waited (phase 1 and 2) and how long a second
    ``recv``, with data already there, took (phase 2 alone).
    """
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.settimeout(10)
        threading.Timer(delay, peer.sendall, (b"x" * 1000,)).start()
        with stopwatch() as waited:
            first = ours.recv(500)  # blocks: nothing to read for `delay` seconds
        with stopwatch() as copied:
            second = ours.recv(500)  # the other 500 bytes are there: only the copy
    return {"waited": waited(), "copied": copied(), "bytes": len(first) + len(second)}


def nonblocking_read(delay: float) -> dict[str, Any]:
    """Non-blocking ``recv``: EAGAIN at once, then a retry loop until the data comes."""
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.setblocking(False)
        try:
            ours.recv(100)
        except BlockingIOError as exc:
            raised = (type(exc).__name__, errno.errorcode.get(exc.errno or 0, "?"))
        threading.Timer(delay, peer.sendall, (b"here",)).start()
        attempts = 0
        with stopwatch() as elapsed:
            while True:  # the busy loop select() exists to avoid
                attempts += 1
                try:
                    data = ours.recv(100)
                    break
                except BlockingIOError:
                    continue
    return {"raised": raised, "attempts": attempts, "seconds": elapsed(), "data": data}


def _allow_descriptors(wanted: int) -> int:
    """Raise this process's soft open-file limit towards ``wanted``; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def select_ceiling() -> dict[str, Any]:
    """Open socket pairs until a descriptor numbers FD_SETSIZE or more; watch it three ways."""
    limit = _allow_descriptors(FD_SETSIZE + 64)
    if limit < FD_SETSIZE + 16:
        return {"skipped": f"this process may open only {limit} files"}
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        while not pairs or pairs[-1][0].fileno() < FD_SETSIZE:
            pairs.append(socket.socketpair())
        high, peer = pairs[-1]
        peer.send(b"!")  # make it readable: poll and epoll must say so
        try:
            select.select([high], [], [], 0)
            select_says = "ready"
        except ValueError as exc:
            select_says = f"ValueError: {exc}"
        poller = select.poll()
        poller.register(high, select.POLLIN)
        poll_says = poller.poll(0)
        with select.epoll() as epoll:
            epoll.register(high, select.EPOLLIN)
            epoll_says = epoll.poll(0)
        # Below the ceiling select works, but scans every number up to the highest.
        low = [pair[0] for pair in pairs[: FD_SETSIZE // 2 - 16]]
        with stopwatch() as scan:
            for _ in range(200):
                select.select(low, [], [], 0)
        with select.epoll() as epoll:
            for sock in low:
                epoll.register(sock, select.EPOLLIN)
            with stopwatch() as ready_list:
                for _ in range(200):
                    epoll.poll(0)
        return {
            "fd": high.fileno(),
            "opened": 2 * len(pairs),
            "select": select_says,
            "poll": [(fd, event & select.POLLIN != 0) for fd, event in poll_says],
            "epoll": [(fd, event & select.EPOLLIN != 0) for fd, event in epoll_says],
            "watched": len(low),
            "select_us": scan() / 200 * 1e6,
            "epoll_us": ready_list() / 200 * 1e6,
        }
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def triggering(edge: bool) -> dict[str, list[int]]:
    """How many times epoll reports one socket, level- or edge-triggered.

    100 bytes arrive; three polls without reading; 10 bytes read; two polls;
    10 more bytes arrive; one poll. Returns the events seen at each stage.
    """
    ours, peer = socket.socketpair()
    with ours, peer, select.epoll() as epoll:
        epoll.register(ours, select.EPOLLIN | (select.EPOLLET if edge else 0))
        peer.send(b"a" * 100)
        unread = [len(epoll.poll(0)) for _ in range(3)]
        ours.recv(10)  # 90 bytes still waiting
        after_partial_read = [len(epoll.poll(0)) for _ in range(2)]
        peer.send(b"b" * 10)
        after_new_data = [len(epoll.poll(0))]
    return {"unread": unread, "partial": after_partial_read, "new": after_new_data}


def run(out: Narrator, delay: float = 0.2) -> dict[str, Any]:
    """Narrate the lesson; return what was measured, for the tests."""
    out.title(
        "Lesson 6: IO models, from a blocking recv to epoll",
        "第 6 课：IO 模型，从阻塞的 recv 到 epoll",
    )
    out.say(
        """
        Reading from a socket is two phases: (1) wait until data has arrived,
        (2) copy it from the kernel into your buffer. The IO models differ in
        who waits for phase 1, and how.
        """,
        """
        从 socket 读数据分两个阶段：(1) 等待数据到达；(2) 把数据从内核复制到你的缓冲区。
        各种 IO 模型的区别，就在于阶段 1 由谁来等、怎么等。
        """,
    )

    out.step(
        "Blocking: the call waits for data, keeping the thread",
        "阻塞（blocking）：调用一直等到数据到来，线程也跟着被占住",
    )
    out.code(blocking_read)
    blocking = blocking_read(delay)
    waited, sent_after = blocking["waited"] * 1000, delay * 1000
    copied = blocking["copied"] * 1e6
    out.trace(
        f"first recv waited {waited:.0f} ms (the peer sent after {sent_after:.0f} ms): "
        "phases 1 and 2",
        f"第一次 recv 等了 {waited:.0f} 毫秒（对端在 {sent_after:.0f} 毫秒后才发送）：阶段 1 和 2",
    )
    out.trace(
        f"second recv, data already there: {copied:.0f} µs: phase 2 only",
        f"第二次 recv，数据已经在了：{copied:.0f} 微秒：只有阶段 2",
    )
    out.say(
        """
        One thread per connection makes this work for many clients: each thread
        waits in its own recv. Lesson 7 shows what 10,000 such threads cost.
        """,
        """
        每个连接一个线程，就能用这种方式服务许多客户端：每个线程在各自的 recv 里等。
        第 7 课会展示一万个这样的线程要付出什么代价。
        """,
    )

    out.step(
        "Non-blocking: EAGAIN at once, and a loop that spins",
        "非阻塞（non-blocking）：立即返回 EAGAIN，以及一个空转的循环",
    )
    nonblocking = nonblocking_read(delay)
    name, code = nonblocking["raised"]
    out.trace(
        f"recv with nothing to read raised {name} (errno {code}) without waiting",
        f"没有数据可读时，recv 不等待，直接抛出 {name}（errno {code}）",
    )
    attempts, spun = nonblocking["attempts"], nonblocking["seconds"] * 1000
    out.trace(
        f"retrying until the data came: {attempts:,} calls in {spun:.0f} ms, "
        "one core busy the whole time",
        f"一直重试到数据到来：{spun:.0f} 毫秒里调用了 {attempts:,} 次，整段时间占满一个 CPU 核",
    )
    out.say(
        """
        Non-blocking calls never wait, so a program can serve many sockets from
        one thread, but only if something tells it which socket is ready instead
        of asking each one in a loop. That something is IO multiplexing.
        """,
        """
        非阻塞调用从不等待，所以一个程序可以用一个线程服务许多 socket；但前提是有东西
        告诉它哪个 socket 已经就绪，而不是在循环里挨个去问。这个东西就是
        IO 多路复用（IO multiplexing）。
        """,
    )

    out.step(
        f"select() stops at descriptor {FD_SETSIZE}; poll() and epoll do not",
        f"select() 止步于描述符 {FD_SETSIZE}；poll() 和 epoll 则不会",
    )
    ceiling = select_ceiling()
    if "skipped" in ceiling:
        why = ceiling["skipped"]
        out.trace(
            f"skipped: {why} (raise it with ulimit -n 2048)",
            f"已跳过：{why}（用 ulimit -n 2048 调高它）",
        )
    else:
        opened, last = ceiling["opened"], ceiling["fd"]
        out.trace(
            f"opened {opened:,} sockets; the last is descriptor {last}",
            f"打开了 {opened:,} 个 socket；最后一个是描述符 {last}",
        )
        out.trace(f"select([it])  -> {ceiling['select']}")
        out.trace(f"poll()        -> {ceiling['poll']}  (descriptor, readable)")
        out.trace(f"epoll.poll()  -> {ceiling['epoll']}")
        watched, per_select, per_epoll = (
            ceiling["watched"],
            ceiling["select_us"],
            ceiling["epoll_us"],
        )
        out.trace(
            f"with {watched} idle sockets watched: select {per_select:.1f} µs per call "
            f"(it scans them all), epoll {per_epoll:.1f} µs (it keeps a ready list)",
            f"监视 {watched} 个空闲 socket 时：select 每次调用 {per_select:.1f} 微秒"
            f"（它要全部扫一遍），epoll {per_epoll:.1f} 微秒（它维护一个就绪列表）",
        )
    out.say(
        """
        select() takes a bitmap of FD_SETSIZE bits, so a descriptor numbered
        1024 or more cannot even be asked about, however few sockets you watch.
        poll() takes a list, epoll keeps the watched set in the kernel and hands
        back only the ready ones: its cost follows activity, not the set's size.
        """,
        """
        select() 接收一个 FD_SETSIZE 位的位图，所以编号 1024 及以上的描述符根本没法
        拿来问，不管你监视的 socket 有多少。poll() 接收一个列表；epoll 把监视集合放在
        内核里，只交回已就绪的那些：它的开销随活跃程度变化，而不随集合大小变化。
        """,
    )

    out.step(
        "Level- and edge-triggered epoll, the same socket, events counted",
        "水平触发与边缘触发的 epoll：同一个 socket，数一数事件",
    )
    level, edge = triggering(edge=False), triggering(edge=True)
    labels = (("level-triggered", "水平触发", level), ("edge-triggered ", "边缘触发", edge))
    for label, label_zh, counts in labels:
        unread, partial, new = counts["unread"], counts["partial"], counts["new"]
        out.trace(
            f"{label}: 100 bytes, 3 polls -> {unread}; read 10, 2 polls -> {partial}; "
            f"10 more arrive -> {new}",
            f"{label_zh}：100 字节，轮询 3 次 -> {unread}；读走 10 字节，轮询 2 次 -> {partial}；"
            f"又到 10 字节 -> {new}",
        )
    out.say(
        """
        Level-triggered epoll (and select, and poll) reports a socket on every
        call while unread data remains: forgetting a socket costs a wasted
        wake-up, nothing more. Edge-triggered reports each arrival once, so a
        reader that stops before EAGAIN strands the rest until more data comes.
        gevent's hub (libev) and the selectors module use level triggering.
        """,
        """
        水平触发（level-triggered）的 epoll（还有 select 和 poll）只要还有未读数据，
        每次调用都会报告这个 socket：漏读一个 socket，代价不过是一次白白的唤醒。
        边缘触发（edge-triggered）对每次数据到达只报告一次，所以读者若没读到 EAGAIN
        就停手，剩下的数据就会一直搁着，直到有新数据到来。gevent 的 hub（libev）
        和 selectors 模块用的都是水平触发。
        """,
    )
    return {"blocking": blocking, "nonblocking": nonblocking, "ceiling": ceiling,
            "level": level, "edge": edge}  # fmt: skip
