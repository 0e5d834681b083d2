"""Lesson 4: monkey-patching turns blocking calls into waits the hub can overlap.

What it shows
    The same program (three greenlets calling ``time.sleep``, then three
    greenlets reading from a slow server with a plain ``socket``) is run in
    three fresh processes: unpatched, where each blocking call stops the
    whole process and the greenlets run one after another; patched with
    ``gevent.monkey.patch_all()`` as the first statement, where they overlap;
    and patched too late, after ``from time import sleep`` had already copied
    the blocking function into a name that patching cannot reach. Patching is
    per process, hence the subprocesses. The timings are measured now.

Read first
    Lesson 3 (``scheduling``): ``gevent.sleep`` waits cooperatively. Next:
    lesson 5 (``echo_server``), a server built on exactly this.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from typing import Any

from geventsrv.tutorial._narrate import Narrator

SUMMARY = "patch_all() makes time.sleep and socket cooperative; it must come first"
SUMMARY_ZH = "patch_all() 让 time.sleep 和 socket 变成协作式的；它必须最先执行"

MODES = ("unpatched", "patched", "patched-late")


class SlowServer:
    """A thread-per-connection server (in this unpatched process) that answers after ``pause``."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            conn.recv(1)
            time.sleep(self.pause)
            conn.sendall(b"answer")

    def close(self) -> None:
        self.listener.close()


def run_program(mode: str, port: int, pause: float) -> dict[str, Any]:
    """Run the demo program in a fresh interpreter; return its measured timings."""
    result = subprocess.run(
        [sys.executable, "-m", "geventsrv.tutorial._blocking_program", mode, str(port), str(pause)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    timings: dict[str, Any] = json.loads(result.stdout)
    return timings


def run(out: Narrator, pause: float = 0.5) -> dict[str, Any]:
    """Narrate the lesson; return the timings of each mode, for the tests."""
    out.title("Lesson 4: monkey-patching", "第 4 课：猴子补丁（monkey-patching）")
    out.say(
        """
        This program is run three times, each in a fresh Python process, since
        patching changes modules for the whole process:
        """,
        """
        下面这个程序要运行三次，每次都在一个全新的 Python 进程里，
        因为打补丁改变的是整个进程里的模块：
        """,
    )
    source = resources.files("geventsrv.tutorial").joinpath("_blocking_program.py").read_text()
    out.code(source[source.index("import sys") :])

    server = SlowServer(pause)
    results: dict[str, Any] = {}
    try:
        for mode in MODES:
            command = f"python -m geventsrv.tutorial._blocking_program {mode}"
            out.step(f"Run {command}", f"运行 {command}")
            timings = run_program(mode, server.port, pause)
            results[mode] = timings
            slept, read = timings["sleep"], timings["socket"]
            out.trace(
                f"3 x sleep({pause:g}):        {slept:.3f} s",
                f"3 次 sleep({pause:g})：     {slept:.3f} 秒",
            )
            out.trace(
                f"3 x slow socket reads:  {read:.3f} s", f"3 次缓慢的 socket 读：{read:.3f} 秒"
            )
            if mode == "patched":
                patched = ", ".join(n for n in timings["patched"] if not n.startswith("_gevent"))
                out.trace(f"modules patched: {patched}", f"打了补丁的模块：{patched}")
    finally:
        server.close()

    un, ok, late = (results[mode] for mode in MODES)
    out.say(
        f"""
        Unpatched, each blocking call holds the only thread: {un["sleep"]:.2f} s and
        {un["socket"]:.2f} s, one greenlet after another (3 x {pause:g} s).
        Patched first, time.sleep and socket are gevent's versions, which switch to
        the hub while they wait: {ok["sleep"]:.2f} s and {ok["socket"]:.2f} s, all three at once.
        Patched late, the socket calls overlap ({late["socket"]:.2f} s): the program looks
        up socket.create_connection when it calls it, and patching replaced that
        attribute. But `from time import sleep` had copied the original function
        into a name of its own before patch_all() ran, so sleep() still blocks
        ({late["sleep"]:.2f} s). Other imports hide such copies where you cannot see
        them. Hence the rule: `from gevent import monkey; monkey.patch_all()` is the
        first statement of the program, as in geventsrv/__main__.py.
        """,
        f"""
        不打补丁时，每个阻塞调用都占住唯一的线程：sleep 共用 {un["sleep"]:.2f} 秒，
        socket 读共用 {un["socket"]:.2f} 秒，一个 greenlet 接一个地执行（3 x {pause:g} 秒）。
        先打补丁时，time.sleep 和 socket 换成了 gevent 的版本，等待时会切回 hub：
        两者分别只用 {ok["sleep"]:.2f} 秒和 {ok["socket"]:.2f} 秒，三个同时进行。
        补丁打晚了，socket 调用仍然重叠（{late["socket"]:.2f} 秒）：程序在调用时才去查找
        socket.create_connection，而补丁已经替换了这个属性。可是 `from time import sleep`
        早在 patch_all() 之前就把原来的函数复制到了自己的名字下，所以 sleep() 依旧阻塞
        （{late["sleep"]:.2f} 秒）。别的 import 也会把这样的副本藏在你看不见的地方。
        所以规矩是：`from gevent import monkey; monkey.patch_all()` 是程序的第一条语句，
        就像 geventsrv/__main__.py 里那样。
        """,
    )
    return results
