"""Lesson 2: watching every switch with ``greenlet.settrace``.

What it shows
    gevent adds one special greenlet, the *hub*, which runs the event loop.
    ``gevent.spawn`` does not run anything; it schedules. Whenever a greenlet
    waits (``gevent.sleep``, a socket read), it switches to the hub, and the
    hub switches to whichever greenlet can go on. The trace printed here is
    every switch the interpreter made: greenlets never switch to each other
    directly, every path goes through the hub.

Read first
    Lesson 1 (``switching``): what a switch is. Next: lesson 3
    (``scheduling``), which measures what this buys. ``--plot FILE.png``
    draws the recorded switches as a timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gevent

from geventsrv.tutorial._narrate import Narrator
from geventsrv.tutorial._timeline import SwitchRecorder, Timeline
from geventsrv.tutorial._timeline import draw as draw_timelines

SUMMARY = "greenlet.settrace shows every switch gevent's hub makes"
SUMMARY_ZH = "用 greenlet.settrace 看清 gevent 的 hub 做的每一次切换"


def two_workers() -> None:
    """The program being traced: two greenlets that each wait once."""

    def worker(name: str, pause: float) -> None:
        gevent.sleep(pause)  # waits: switch to the hub

    a = gevent.spawn(worker, "a", 0.02)
    b = gevent.spawn(worker, "b", 0.01)
    a.name, b.name = "a", "b"  # names for the trace
    gevent.joinall([a, b])  # main waits too: switch to the hub


def record(program: Any) -> Timeline:
    """Run ``program`` under a :class:`SwitchRecorder`: every switch, with its time."""
    with SwitchRecorder(
        "two greenlets that each sleep once", "两个各睡一次的 greenlet"
    ) as timeline:
        program()
    return timeline


def draw(result: dict[str, Any], path: Path, lang: str = "en") -> Path:
    """``--plot``: the recorded run as a picture."""
    heading = {
        "en": "Lesson 2: every switch of two_workers()",
        "zh": "第 2 课：two_workers() 的每一次切换",
    }
    return draw_timelines([result["timeline"]], path, heading[lang], lang)


def run(out: Narrator) -> dict[str, Any]:
    """Narrate the lesson; return the recorded switches, for the tests."""
    out.title("Lesson 2: tracing every switch", "第 2 课：追踪每一次切换")
    out.say(
        """
        greenlet.settrace(callback) calls callback(event, (origin, target)) on every
        switch. Here is a small gevent program, and then every switch it caused.
        """,
        """
        greenlet.settrace(callback) 会在每一次切换时调用 callback(event, (origin, target))。
        下面是一个小小的 gevent 程序，然后是它引起的每一次切换。
        """,
    )
    out.step("The program", "程序")
    out.code(two_workers)
    out.step("Every switch, in order", "按顺序列出每一次切换")
    timeline = record(two_workers)
    switches = [(event, origin, target) for _, event, origin, target in timeline.switches]
    for event, origin, target in switches:
        out.trace(f"{event:6} {origin:>12} -> {target}")
    direct = [s for s in switches if "hub" not in (s[1], s[2])]
    total, between = len(switches), len(direct)
    out.say(
        f"""
        {total} switches, {between} of them between two workers directly.
        Read it as: main spawns a and b (nothing runs yet), then waits in joinall
        (main -> hub). The hub starts a and b in turn; each sleeps, which is a
        switch back to the hub. When a timer fires, the hub resumes that greenlet
        (b first: its sleep is shorter); it finishes, and the hub wakes main, whose
        joinall notes one result and waits again (main -> hub) until a is done.
        This is all a gevent "thread of control" is: a greenlet the hub resumes when
        what it waits for is ready. Lesson 3 measures what that buys.
        """,
        f"""
        共 {total} 次切换，其中两个 worker 之间直接切换的有 {between} 次。
        这样读：main 创建（spawn）a 和 b（此时什么都还没运行），然后在 joinall 里等待
        （main -> hub）。hub 依次启动 a 和 b；它们各自 sleep，也就是切回 hub。
        某个定时器到期时，hub 恢复对应的 greenlet（b 先醒，因为它睡得短）；它运行结束，
        hub 唤醒 main，main 的 joinall 记下一个结果，再次等待（main -> hub），直到 a 也结束。
        gevent 里的一条“执行流”不过如此：一个 greenlet，在它等待的东西就绪时由 hub 恢复运行。
        第 3 课来测量这能带来什么。
        """,
    )
    return {"switches": switches, "direct": direct, "timeline": timeline}
