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
    with SwitchRecorder("two greenlets that each sleep once") as timeline:
        program()
    return timeline


def draw(result: dict[str, Any], path: Path) -> Path:
    """``--plot``: the recorded run as a picture."""
    return draw_timelines([result["timeline"]], path, "Lesson 2: every switch of two_workers()")


def run(out: Narrator) -> dict[str, Any]:
    """Narrate the lesson; return the recorded switches, for the tests."""
    out.title("Lesson 2: tracing every switch")
    out.say("""
        greenlet.settrace(callback) calls callback(event, (origin, target)) on every
        switch. Here is a small gevent program, and then every switch it caused.
    """)
    out.step("The program")
    out.code(two_workers)
    out.step("Every switch, in order")
    timeline = record(two_workers)
    switches = [(event, origin, target) for _, event, origin, target in timeline.switches]
    for event, origin, target in switches:
        out.trace(f"{event:6} {origin:>12} -> {target}")
    direct = [s for s in switches if "hub" not in (s[1], s[2])]
    out.say(f"""
        {len(switches)} switches, {len(direct)} of them between two workers directly.
        Read it as: main spawns a and b (nothing runs yet), then waits in joinall
        (main -> hub). The hub starts a and b in turn; each sleeps, which is a
        switch back to the hub. When a timer fires, the hub resumes that greenlet
        (b first: its sleep is shorter); it finishes, and the hub wakes main, whose
        joinall notes one result and waits again (main -> hub) until a is done.
        This is all a gevent "thread of control" is: a greenlet the hub resumes when
        what it waits for is ready. Lesson 3 measures what that buys.
    """)
    return {"switches": switches, "direct": direct, "timeline": timeline}
