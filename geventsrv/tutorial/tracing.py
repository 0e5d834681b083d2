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
    (``scheduling``), which measures what this buys.
"""

from __future__ import annotations

from typing import Any

import gevent
import greenlet

from geventsrv.tutorial._narrate import Narrator

SUMMARY = "greenlet.settrace shows every switch gevent's hub makes"


def two_workers() -> None:
    """The program being traced: two greenlets that each wait once."""

    def worker(name: str, pause: float) -> None:
        gevent.sleep(pause)  # waits: switch to the hub

    a = gevent.spawn(worker, "a", 0.02)
    b = gevent.spawn(worker, "b", 0.01)
    a.name, b.name = "a", "b"  # names for the trace
    gevent.joinall([a, b])  # main waits too: switch to the hub


def trace_switches(program: Any) -> list[tuple[str, str, str]]:
    """Run ``program`` with a switch tracer; return ``(event, origin, target)`` names."""
    hub = gevent.get_hub()
    main = greenlet.getcurrent()
    names: dict[Any, str] = {main: "main", hub: "hub"}
    switches: list[tuple[str, str, str]] = []

    def name_of(glet: Any) -> str:
        if glet not in names:
            names[glet] = getattr(glet, "name", None) or f"greenlet-{len(names)}"
        return names[glet]

    def tracer(event: str, args: tuple[Any, Any]) -> None:
        origin, target = args
        switches.append((event, name_of(origin), name_of(target)))

    previous = greenlet.settrace(tracer)
    try:
        program()
    finally:
        greenlet.settrace(previous)
    return switches


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
    switches = trace_switches(two_workers)
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
    return {"switches": switches, "direct": direct}
