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
    ("sleep three times at once, collect results", gather_async, gather_gevent),
    ("start a task, work meanwhile, collect it", task_async, task_gevent),
    ("give up after a timeout", timeout_async, timeout_gevent),
    ("echo server and client", echo_async, echo_gevent),
]


def run(out: Narrator) -> dict[str, Any]:
    """Run each pair, show both sources and both results; return them for the tests."""
    out.title("Lesson 8: asyncio beside gevent")
    out.say("""
        Each program twice: asyncio first, then gevent. Both run here, now.
    """)
    results: dict[str, Any] = {}
    for title, async_version, gevent_version in PAIRS:
        out.step(title)
        out.code(async_version)
        with stopwatch() as async_time:
            async_result = asyncio.run(async_version())
        out.trace(f"asyncio: {async_result!r} in {async_time():.3f} s")
        out.code(gevent_version)
        with stopwatch() as gevent_time:
            gevent_result = gevent_version()
        out.trace(f"gevent:  {gevent_result!r} in {gevent_time():.3f} s")
        results[gevent_version.__name__.removesuffix("_gevent")] = {
            "asyncio": async_result,
            "gevent": gevent_result,
            "asyncio_seconds": async_time(),
            "gevent_seconds": gevent_time(),
        }
    out.say("""
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
    """)
    return results
