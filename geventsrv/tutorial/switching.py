"""Lesson 1: explicit switching with greenlet.

What it shows
    A greenlet is a function with its own stack that runs only when something
    switches to it, and runs until it switches away. Nothing is scheduled
    behind your back: every transfer of control below is a ``switch()`` you
    can point at. Shown in turn: two greenlets passing control back and forth;
    values travelling through ``switch()``; where control goes when a greenlet
    finishes (its ``parent``); ``dead``; and ``throw()`` with ``GreenletExit``.

Read first
    Nothing: this is the start. Next: lesson 2 (``tracing``), which watches
    gevent do these switches for you.
"""

from __future__ import annotations

from typing import Any

from greenlet import GreenletExit, getcurrent, greenlet

from geventsrv.tutorial._narrate import Narrator

SUMMARY = "explicit switching with greenlet: switch(), values, parent, dead, throw()"
SUMMARY_ZH = "用 greenlet 显式切换：switch()、传值、parent、dead、throw()"


def hand_over_control(say: Any) -> tuple[greenlet, greenlet]:
    """Two greenlets that hand control to each other; nothing else ever runs them."""

    def first() -> None:
        say("first: 1")
        second_g.switch()  # run `second` until it switches back
        say("first: 3")
        second_g.switch()
        say("first: 5 (finished: control returns to my parent, main)")

    def second() -> None:
        say("second: 2")
        first_g.switch()
        say("second: 4")
        first_g.switch()
        say("second: never printed: nobody switches back here")

    first_g, second_g = greenlet(first), greenlet(second)
    first_g.switch()
    return first_g, second_g


def running_total(say: Any) -> list[int]:
    """Values go in as switch() arguments and come out as switch() return values."""

    def accumulate(start: int) -> int:
        total = start  # the first switch()'s arguments are the function's arguments
        while True:
            value = main.switch(total)  # give main the total, wait for the next value
            if value is None:
                return total  # a return value goes to the parent's switch()
            total += value

    main = getcurrent()
    adder = greenlet(accumulate)
    seen = [adder.switch(100)]
    for value in (5, 10, 20):
        seen.append(adder.switch(value))
        say(f"main sent {value:>2}, adder answered {seen[-1]}")
    seen.append(adder.switch(None))
    say(f"main sent None, adder returned {seen[-1]} and is dead: {adder.dead}")
    return seen


def throwing(say: Any) -> dict[str, Any]:
    """throw() raises inside a suspended greenlet, at the switch() where it waits."""

    main = getcurrent()

    def worker() -> str:
        try:
            main.switch("ready")  # suspend here, handing main a value
        except GreenletExit:
            say("worker: got GreenletExit at its switch(); cleaning up")
            return "cleaned up"
        return "not reached"

    def fragile() -> None:
        main.switch()

    polite = greenlet(worker)
    say(f"worker says {polite.switch()!r}; dead={polite.dead}")
    result = polite.throw()  # GreenletExit by default: "please finish"
    say(f"throw() returned {result!r}; dead={polite.dead}")

    doomed = greenlet(fragile)
    doomed.switch()
    try:
        doomed.throw(ValueError("bad input"))
    except ValueError as exc:
        caught = repr(exc)
        say(f"an exception not caught inside comes out of throw() in the parent: {caught}")
    return {"result": result, "dead": polite.dead, "caught": caught, "doomed_dead": doomed.dead}


def run(out: Narrator) -> dict[str, Any]:
    """Narrate the lesson; return what was observed, for the tests."""
    out.title("Lesson 1: explicit switching with greenlet", "第 1 课：用 greenlet 显式切换")
    out.say(
        """
        A greenlet is a coroutine: a function with its own stack that can stop midway
        and later go on from where it stopped. It runs only when switched to, and
        until it switches away. There is no scheduler here: just the switch() calls
        you can see.
        """,
        """
        greenlet 是一种协程（coroutine）：一个拥有自己栈的函数，可以在中途停下、
        之后再从停下的地方接着运行。它只有在被切换（switch）进来时才运行，
        一直运行到它自己切换出去为止。这里没有调度器，只有你看得见的一个个 switch() 调用。
        """,
    )

    out.step("Two greenlets hand control back and forth", "两个 greenlet 来回交出控制权")
    out.code(hand_over_control)
    order: list[str] = []

    def say(text: str) -> None:
        order.append(text)
        out.trace(text)

    first_g, second_g = hand_over_control(say)
    out.say(
        f"""
        Order 1-2-3-4-5: each line runs only after an explicit switch().
        first.dead={first_g.dead}: it returned, so control went to its parent (main).
        second.dead={second_g.dead}: it is still suspended inside switch(); nobody resumes it.
        When it is garbage-collected, greenlet throws GreenletExit into it so its
        finally blocks run.
        """,
        f"""
        顺序是 1-2-3-4-5：每一行都要等一次显式的 switch() 之后才会执行。
        first.dead={first_g.dead}：它已经返回，控制权交还给它的 parent（main）。
        second.dead={second_g.dead}：它仍挂起在 switch() 里，再也没有谁切回它。
        等它被垃圾回收时，greenlet 会向它抛出 GreenletExit，让它的 finally 块得以执行。
        """,
    )

    out.step("Values travel through switch()", "值随 switch() 传递")
    out.code(running_total)
    totals = running_total(out.trace)
    out.say(
        """
        adder.switch(x) sends x to the point where adder waits, and returns whatever
        adder passes to its next switch() (or returns, when it finishes).
        """,
        """
        adder.switch(x) 把 x 送到 adder 等待的那个位置，并返回 adder 在下一次
        switch() 时交出的值（adder 结束时，则是它的返回值）。
        """,
    )

    out.step(
        "parent: where control goes when a greenlet finishes",
        "parent：greenlet 结束后，控制权去哪里",
    )
    child = greenlet(lambda: "child's return value")
    is_main = child.parent is getcurrent()
    out.trace(f"child.parent is main: {is_main}", f"child.parent 就是 main：{is_main}")
    returned = child.switch()
    out.trace(
        f"main received {returned!r} from child's return; child.dead={child.dead}",
        f"main 收到了 child 的返回值 {returned!r}；child.dead={child.dead}",
    )

    out.step("throw() and GreenletExit", "throw() 与 GreenletExit")
    out.code(throwing)
    thrown = throwing(out.trace)
    out.say(
        """
        gevent builds on exactly this: Greenlet.kill() is throw(GreenletExit) at
        the point where the greenlet waits. Next, lesson 2 watches gevent's hub
        make these switches for you.
        """,
        """
        gevent 正是建立在这之上：Greenlet.kill() 就是在 greenlet 等待的位置执行
        throw(GreenletExit)。下一课（第 2 课）来看 gevent 的 hub 如何替你完成这些切换。
        """,
    )
    return {
        "order": order,
        "first_dead": first_g.dead,
        "second_dead": second_g.dead,
        "totals": totals,
        "child_returned": returned,
        **thrown,
    }
