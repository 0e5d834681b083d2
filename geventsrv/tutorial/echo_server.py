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
    out.title("Lesson 5: one greenlet per connection")
    out.say("The whole server, as this file defines it:")
    out.code(handle)
    out.code(serve)
    out.code("""
        if __name__ == "__main__":  # first statement of the file
            from gevent import monkey
            monkey.patch_all()
    """)

    out.step(f"Start it and hold {clients} connections open at once")
    with running_program("geventsrv.tutorial.echo_server") as (_, port, line):
        out.trace(line)
        result = hold_clients(port, clients)
    out.trace(
        f"{result['clients']} clients, all connected before any sent, "
        f"{len(result['failures'])} failures, {result['seconds']:.3f} s"
    )
    out.say("""
        One process, one thread, and every connection was open at once, each in a
        greenlet parked in recv() until its bytes arrived.
    """)

    out.step("What a server you leave running needs on top (geventsrv/server.py)")
    out.say("""
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
    """)

    out.step("What the patched socket costs, and what geventsrv does instead")
    out.say("""
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
    """)
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
