"""Lesson 8: asyncio beside gevent, the same four programs written both ways.

What it shows
    For a reader who knows asyncio tutorials: sleep-and-gather, starting a
    task, a timeout, and a tiny echo server, each as an ``async def`` and as
    plain gevent code, run here and timed. The mapping: ``async def`` +
    ``await`` marks every point where a coroutine may wait; a greenlet can
    wait inside any call, unmarked. ``asyncio.create_task`` is
    ``gevent.spawn``; ``gather`` is ``joinall``; ``wait_for`` is
    ``gevent.Timeout``; the event loop is the hub. The gevent versions use
    ``gevent.socket`` explicitly (the module ``patch_all()`` installs as
    ``socket``), so this process stays unpatched.

Read first
    Lessons 3, 5 and 7. Next: the real server, ``geventsrv/server.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gevent
from gevent import socket as gsocket

from geventsrv.tutorial._narrate import Narrator, stopwatch

SUMMARY = "the same programs with async/await and with greenlets, side by side"
SUMMARY_ZH = "同样的程序，用 async/await 写一遍，用 greenlet 写一遍，并排对照"

PAUSE = 0.2


# -- 1. sleep and gather --------------------------------------------------


async def gather_async() -> list[int]:
    async def job(n: int) -> int:
        await asyncio.sleep(PAUSE)
        return n * n

    return list(await asyncio.gather(job(1), job(2), job(3)))


def gather_gevent() -> list[int]:
    def job(n: int) -> int:
        gevent.sleep(PAUSE)
        return n * n

    jobs = [gevent.spawn(job, n) for n in (1, 2, 3)]
    gevent.joinall(jobs)
    return [job.get() for job in jobs]


# -- 2. start a task, do other work, collect its result ------------------


async def task_async() -> str:
    task = asyncio.create_task(asyncio.sleep(PAUSE, result="background done"))
    await asyncio.sleep(PAUSE)  # the task runs meanwhile
    return await task


def task_gevent() -> str:
    def background() -> str:
        gevent.sleep(PAUSE)
        return "background done"

    task = gevent.spawn(background)
    gevent.sleep(PAUSE)  # the greenlet runs meanwhile
    return task.get()


# -- 3. a timeout ----------------------------------------------------------


async def timeout_async() -> str:
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=PAUSE)
    except asyncio.TimeoutError:
        return "timed out"
    return "finished"


def timeout_gevent() -> str:
    try:
        with gevent.Timeout(PAUSE):
            gevent.sleep(10)
    except gevent.Timeout:
        return "timed out"
    return "finished"


# -- 4. a tiny echo server and one client ---------------------------------


async def echo_async() -> bytes:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()  # wait while the client is slow to read
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello from asyncio")
    writer.write_eof()
    reply = await reader.read()
    writer.close()
    server.close()
    await server.wait_closed()
    return reply


def echo_gevent() -> bytes:
    def handle(conn: gsocket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)  # waits while the client is slow to read

    # Not gsocket.create_server(): that is the stdlib function, which builds a
    # stdlib (blocking) socket unless the process is patched.
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    acceptor = gevent.spawn(lambda: [gevent.spawn(handle, listener.accept()[0])])
    with gsocket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"hello from gevent")
        client.shutdown(gsocket.SHUT_WR)
        reply = b"".join(iter(lambda: client.recv(65536), b""))
    acceptor.join()
    listener.close()
    return reply


PAIRS = [
    ("sleep three times at once, collect results", "同时睡三次，收集结果",
     gather_async, gather_gevent),
    ("start a task, work meanwhile, collect it", "启动一个任务，其间做别的事，再取回结果",
     task_async, task_gevent),
    ("give up after a timeout", "超时即放弃", timeout_async, timeout_gevent),
    ("echo server and client", "回显服务器与客户端", echo_async, echo_gevent),
]  # fmt: skip


def run(out: Narrator) -> dict[str, Any]:
    """Run each pair, show both sources and both results; return them for the tests."""
    out.title("Lesson 8: asyncio beside gevent", "第 8 课：asyncio 与 gevent 对照")
    out.say(
        """
        asyncio and gevent both do asynchronous I/O in one thread: while one operation
        waits, others run. They differ in how the code is written: asyncio's coroutines
        mark every waiting point with async/await; gevent keeps synchronous,
        blocking-style code, and the hub switches greenlets while it waits.
        Each program twice: asyncio first, then gevent. Both run here, now.
        """,
        """
        asyncio 和 gevent 都在一个线程里做异步（asynchronous）I/O：一个操作在等待时，
        别的操作接着运行。区别在写法：asyncio 的协程用 async/await 标出每个等待点；
        gevent 让你照旧写同步（synchronous）、阻塞式的代码，等待时由 hub 切换 greenlet。
        每个程序写两遍：先是 asyncio，再是 gevent。两者都在这里当场运行。
        """,
    )
    results: dict[str, Any] = {}
    for title, title_zh, async_version, gevent_version in PAIRS:
        out.step(title, title_zh)
        out.code(async_version)
        with stopwatch() as async_time:
            async_result = asyncio.run(async_version())
        spent = async_time()
        out.trace(
            f"asyncio: {async_result!r} in {spent:.3f} s",
            f"asyncio：{async_result!r}，用时 {spent:.3f} 秒",
        )
        out.code(gevent_version)
        with stopwatch() as gevent_time:
            gevent_result = gevent_version()
        spent = gevent_time()
        out.trace(
            f"gevent:  {gevent_result!r} in {spent:.3f} s",
            f"gevent： {gevent_result!r}，用时 {spent:.3f} 秒",
        )
        results[gevent_version.__name__.removesuffix("_gevent")] = {
            "asyncio": async_result,
            "gevent": gevent_result,
            "asyncio_seconds": async_time(),
            "gevent_seconds": gevent_time(),
        }
    out.say(
        """
        What each model asks of the code:
        - asyncio: every function that may wait is `async def`, and every call to it
          is `await`ed, all the way up. Waiting points are visible; libraries must
          be written for asyncio.
        - gevent: functions stay ordinary; any call that does I/O may switch
          greenlets. Existing blocking libraries work once patched, but a waiting
          point is not marked in the source: shared state needs the same care as
          with threads wherever a call might do I/O.
        Neither pre-empts: a loop that never awaits (asyncio) or never does I/O
        (gevent) stalls everything else, as lesson 3 showed.
        """,
        """
        两种模型各自对代码提出什么要求：
        - asyncio：每个可能等待的函数都是 `async def`，每次调用它都要 `await`，
          一路向上都是如此。等待点在代码里看得见；库必须专为 asyncio 编写。
        - gevent：函数还是普通函数；任何做 I/O 的调用都可能切换 greenlet。
          现有的阻塞式库打过补丁就能用，但等待点在源码里没有标记：凡是可能做 I/O
          的调用处，共享状态都要像用线程时一样小心对待。
        两者都不抢占：一个从不 await 的循环（asyncio），或从不做 I/O 的循环（gevent），
        都会让其余一切停下来，第 3 课已经演示过。
        """,
    )
    return results
