"""Lesson 5: one greenlet per connection, the smallest correct echo server.

What it shows
    A complete echo server in plain blocking-socket code: an accept loop that
    spawns one greenlet per connection, each running ``recv``/``sendall``
    until the client closes. Run as a program it patches first and serves
    (``python -m geventsrv.tutorial.echo_server [PORT]``); the lesson starts
    it in a subprocess and holds 200 clients open at once to show that they
    are all served together. Then: what ``geventsrv.server`` adds to turn
    this into a server you can leave running.

Read first
    Lesson 4 (``monkeypatching``): why these blocking calls do not block
    each other. Next: lesson 6 (``io_models``), what sits under ``recv``:
    blocking and non-blocking calls, select and epoll.
"""

if __name__ == "__main__":  # run as a program: patch before anything else is imported
    from gevent import monkey

    monkey.patch_all()

import random
import socket
import sys
import threading
from typing import Any

import gevent

from geventsrv.tutorial._narrate import Narrator, stopwatch
from geventsrv.tutorial._programs import running_program

SUMMARY = "a complete echo server in 15 lines: accept loop, one greenlet per connection"
SUMMARY_ZH = "15 行写成的完整回显服务器：accept 循环，每个连接一个 greenlet"


def handle(conn: socket.socket) -> None:
    """Echo until the client closes; then close our side too."""
    with conn:
        while data := conn.recv(65536):  # b"" means the client closed its side
            conn.sendall(data)


def serve(listener: socket.socket) -> None:
    """Accept forever; each connection gets its own greenlet."""
    while True:
        conn, _ = listener.accept()
        gevent.spawn(handle, conn)


def main(port: int = 0) -> None:
    listener = socket.create_server(("127.0.0.1", port))
    print("listening on port", listener.getsockname()[1], flush=True)
    serve(listener)


def hold_clients(port: int, count: int) -> dict[str, Any]:
    """Open ``count`` connections, all at once, and echo through every one.

    Each client thread connects, then waits until all are connected, then
    sends: so the server has ``count`` open connections at the same moment.
    """
    everyone_connected = threading.Barrier(count, timeout=30)
    failures: list[str] = []

    def client(n: int) -> None:
        message = random.Random(n).randbytes(1000)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                everyone_connected.wait()
                sock.sendall(message)
                received = b""
                while len(received) < len(message):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                if received != message:
                    failures.append(f"client {n}: wrong echo")
        except Exception as exc:
            failures.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    with stopwatch() as elapsed:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    return {"clients": count, "failures": failures, "seconds": elapsed()}


def run(out: Narrator, clients: int = 200) -> dict[str, Any]:
    """Start this file as a server, drive it with concurrent clients, narrate."""
    out.title("Lesson 5: one greenlet per connection", "第 5 课：每个连接一个 greenlet")
    out.say("The whole server, as this file defines it:", "整个服务器，就是这个文件里定义的这些：")
    out.code(handle)
    out.code(serve)
    out.code("""
        if __name__ == "__main__":  # first statement of the file
            from gevent import monkey
            monkey.patch_all()
    """)

    out.step(
        f"Start it and hold {clients} connections open at once",
        f"启动它，同时保持 {clients} 个连接处于打开状态",
    )
    with running_program("geventsrv.tutorial.echo_server") as (_, port, line):
        out.trace(line)
        result = hold_clients(port, clients)
    count, failed, seconds = result["clients"], len(result["failures"]), result["seconds"]
    out.trace(
        f"{count} clients, all connected before any sent, {failed} failures, {seconds:.3f} s",
        f"{count} 个客户端，全部连上之后才开始发送，失败 {failed} 个，用时 {seconds:.3f} 秒",
    )
    out.say(
        """
        One process, one thread, and every connection was open at once, each in a
        greenlet parked in recv() until its bytes arrived.
        """,
        """
        一个进程，一个线程，所有连接同时打开；每个连接都在自己的 greenlet 里，
        停在 recv() 上，直到它的字节到达。
        """,
    )

    out.step(
        "What a server you leave running needs on top (geventsrv/server.py)",
        "一个要长期运行的服务器，在此之上还需要什么（geventsrv/server.py）",
    )
    out.say(
        """
        - a connection limit: take a slot before accept(), so extra clients wait in
          the kernel's backlog rather than in memory (--max-conns);
        - idle timeouts: sock.settimeout() would arm a timer around every call that
          waits; instead one reaper greenlet looks at every connection's byte
          counters each quarter of the timeout and throws a TimeoutError into a
          connection that moved nothing (--idle-timeout);
        - errors: a reset raises OSError in that connection's greenlet only; catch
          it there, log one line, close the socket;
        - accept() failures: out of descriptors (EMFILE), back off instead of
          spinning, and recover when connections close;
        - shutdown: on SIGTERM stop accepting, let open connections drain, close the
          rest at a deadline (gevent.signal_handler, since the handler must wait).
        Run `python -m geventsrv --help` for the real thing.
        """,
        """
        - 连接数上限：在 accept() 之前先占一个名额，多出来的客户端就在内核的 backlog
          里等，而不是在内存里等（--max-conns）；
        - 空闲超时：sock.settimeout() 会在每次等待的调用前后挂上又撤下一个定时器；
          geventsrv 的做法是用一个 reaper greenlet，每隔超时时间的四分之一查看一遍
          所有连接的字节计数，向毫无进展的连接抛出 TimeoutError（--idle-timeout）；
        - 错误：连接被重置时，OSError 只在那个连接的 greenlet 里抛出；就在那里捕获它，
          记一行日志，关闭 socket；
        - accept() 失败：文件描述符用完（EMFILE）时退避等待，而不是空转，
          等连接关闭后自行恢复；
        - 关停：收到 SIGTERM 就停止 accept，让已打开的连接处理完（drain），
          到期限时关闭其余连接（用 gevent.signal_handler，因为处理函数需要等待）。
        真正的实现请运行 `python -m geventsrv --help`。
        """,
    )

    out.step(
        "What the patched socket costs, and what geventsrv does instead",
        "打过补丁的 socket 代价几何，geventsrv 又是怎么做的",
    )
    out.say(
        """
        This server's recv() first tries the system call; when nothing has arrived
        yet (the usual case right after sending a reply) it fails with EAGAIN,
        Python builds a BlockingIOError, and only then does the greenlet wait on the
        hub. gevent's sendall() also asks the kernel for the send buffer size on
        every call. So each echo costs three system calls (recv, send, getsockopt),
        and a fourth, a failing recv, whenever the next request is not in yet.
        geventsrv serves the same blocking calls from a socket of its own
        (geventsrv/cooperative.py): after a short read it waits for readability
        first, and it sends with one plain send(). Two system calls per echo, the
        same as asyncio's and a hand-written epoll loop's. `--io patched` runs the
        server on the monkey-patched socket instead, to compare; the lab's
        --syscalls counts both (docs/lab.md).
        """,
        """
        这个服务器的 recv() 先尝试系统调用；如果数据还没到（刚发完回复之后通常如此），
        调用以 EAGAIN 失败，Python 构造一个 BlockingIOError，greenlet 这才到 hub 上等待。
        gevent 的 sendall() 每次调用还要向内核查询发送缓冲区的大小。所以每次回显要花
        三次系统调用（recv、send、getsockopt），下一个请求还没到时再加一次失败的 recv。
        geventsrv 用自己的 socket（geventsrv/cooperative.py）提供同样的阻塞式调用：
        读到的数据不满一个缓冲区时，先等可读再读；发送只用一次普通的 send()。每次回显
        两次系统调用，与 asyncio 和手写的 epoll 循环相同。`--io patched` 则让服务器改用
        打过补丁的 socket 运行，以便对比；实验室（lab）的 --syscalls 会统计两者（docs/lab.md）。
        """,
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
