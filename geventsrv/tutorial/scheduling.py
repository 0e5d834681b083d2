"""Lesson 3: gevent's cooperative scheduling, measured.

What it shows
    ``gevent.spawn`` schedules, ``gevent.sleep`` waits without blocking
    anyone, ``gevent.joinall`` waits for many. Three 1-second sleeps in three
    greenlets take about 1 second, not 3: waiting overlaps. Then the limit of
    the model: a greenlet that computes without ever waiting keeps the hub
    from running anyone else, so a "ticker" that should tick every 50 ms
    stalls for as long as the loop runs. Yielding now and then is the cure,
    but only a yield that lets the hub poll: ``gevent.sleep(0)`` is not one.

Read first
    Lesson 2 (``tracing``): the hub and its switches. Next: lesson 4
    (``monkeypatching``), which makes ordinary blocking calls wait like
    ``gevent.sleep``. ``--plot FILE.png`` draws the three busy loops'
    switches as timelines.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent

from geventsrv.tutorial._narrate import Narrator, stopwatch
from geventsrv.tutorial._timeline import SwitchRecorder
from geventsrv.tutorial._timeline import draw as draw_timelines

SUMMARY = "spawn/sleep/joinall: waits overlap; a CPU loop that never yields blocks everyone"
SUMMARY_ZH = "spawn/sleep/joinall：等待彼此重叠；从不让出的 CPU 循环会挡住所有人"


def sleepers(count: int, seconds: float, say: Any) -> float:
    """``count`` greenlets each sleep ``seconds``; returns the wall time for all of them."""

    def nap(name: str) -> str:
        say(f"{name} starts sleeping")
        gevent.sleep(seconds)  # switches to the hub; the hub runs the others meanwhile
        say(f"{name} wakes up")
        return name

    with stopwatch() as elapsed:
        jobs = [gevent.spawn(nap, f"sleeper {n}") for n in range(1, count + 1)]
        say("spawned all; none has run yet")
        gevent.joinall(jobs)
    return elapsed()


def ticker_beside(busy_seconds: float, pause: Callable[[], object] | None) -> dict[str, float]:
    """A ticker wants to run every 50 ms while another greenlet burns CPU.

    With ``pause`` set, the busy loop calls it every 10 ms to give the hub a
    turn. Returns the longest gap between two ticks and how many units of
    work the loop got done in its time.
    """
    ticks: list[float] = []
    done = 0

    def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            gevent.sleep(0.05)

    def busy() -> None:
        nonlocal done
        end = time.perf_counter() + busy_seconds
        next_pause = time.perf_counter()
        while time.perf_counter() < end:
            sum(range(1000))  # pure computation: never waits, never switches
            done += 1
            if pause is not None and time.perf_counter() >= next_pause:
                pause()
                next_pause = time.perf_counter() + 0.01

    tick = gevent.spawn(ticker)
    tick.name = "ticker"  # names for the timeline (--plot)
    gevent.sleep(0.12)  # a couple of regular ticks first
    worker = gevent.spawn(busy)
    worker.name = "busy"
    worker.join()
    gevent.sleep(0.12)
    tick.kill()
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    return {"max_gap": max(gaps), "work": done}


def yields_until_timer_runs(pause: Callable[[], object]) -> int:
    """How many ``pause()`` calls, 1 ms of computation apart, until a due timer runs."""
    fired: list[bool] = []
    gevent.spawn_later(0, fired.append, True)  # a timer, due at once
    count = 0
    while not fired:
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:  # 1 ms of computation
            pass
        pause()
        count += 1
    return count


def run(out: Narrator, seconds: float = 1.0, busy_seconds: float = 0.5) -> dict[str, Any]:
    """Narrate the lesson with measured timings; return them for the tests."""
    out.title("Lesson 3: cooperative scheduling", "第 3 课：协作式调度")

    out.step(f"Three greenlets sleep {seconds:g} s each", f"三个 greenlet 各睡 {seconds:g} 秒")
    out.code(sleepers)
    total = sleepers(3, seconds, out.trace)
    out.say(
        f"""
        Measured: {total:.3f} s for three {seconds:g}-second sleeps
        ({3 * seconds:g} s if they ran one after another).
        gevent.sleep() registers a timer and switches to the hub, so all three
        wait at the same time. Note "spawned all; none has run yet": spawn only
        schedules; the greenlets start when main waits in joinall().
        """,
        f"""
        实测：三次 {seconds:g} 秒的 sleep 共用 {total:.3f} 秒
        （若一个接一个地运行，要 {3 * seconds:g} 秒）。
        gevent.sleep() 注册一个定时器，然后切换到 hub，所以三个 greenlet 是同时在等。
        注意那一行 "spawned all; none has run yet"：spawn 只负责安排，
        这些 greenlet 要等 main 在 joinall() 里等待时才开始运行。
        """,
    )

    out.step(
        f"A loop that computes for {busy_seconds:g} s and never waits",
        f"一个计算 {busy_seconds:g} 秒、从不等待的循环",
    )
    out.code(ticker_beside)
    timelines = []
    with SwitchRecorder("busy loop that never yields", "从不让出的忙循环") as timeline:
        blocking = ticker_beside(busy_seconds, pause=None)
    timelines.append(timeline)
    gap = blocking["max_gap"]
    out.trace(
        f"ticker should tick every 0.050 s; longest gap: {gap:.3f} s",
        f"ticker 本应每 0.050 秒跳一次；最长间隔：{gap:.3f} 秒",
    )
    out.say(
        """
        The busy greenlet never switches to the hub, so the hub cannot run the
        ticker, nor accept a connection, nor echo a byte, until the loop ends.
        Cooperative means exactly that: nobody is pre-empted.
        """,
        """
        忙碌的 greenlet 从不切换到 hub，所以在循环结束之前，hub 既不能运行 ticker，
        也不能接受连接，更不能回显一个字节。协作式的意思正是如此：谁也不会被抢占。
        """,
    )

    out.step(
        "The same loop, calling gevent.sleep(0) every 10 ms",
        "同一个循环，每 10 毫秒调用一次 gevent.sleep(0)",
    )
    with SwitchRecorder(
        "busy loop calling gevent.sleep(0) every 10 ms",
        "每 10 毫秒调用一次 gevent.sleep(0) 的忙循环",
    ) as timeline:
        sleep0 = ticker_beside(busy_seconds, pause=lambda: gevent.sleep(0))
    timelines.append(timeline)
    gap = sleep0["max_gap"]
    out.trace(f"longest gap between ticks: {gap:.3f} s", f"两次跳动之间的最长间隔：{gap:.3f} 秒")
    out.code(yields_until_timer_runs)
    batch = yields_until_timer_runs(lambda: gevent.sleep(0))
    out.trace(
        f"a timer due at once ran after {batch} sleep(0) calls, 1 ms of work apart",
        f"一个立即到期的定时器，在 {batch} 次 sleep(0) 之后才运行（每次之间做 1 毫秒的计算）",
    )
    out.say(
        """
        Surprise: sleep(0) only puts the greenlet at the back of the hub's queue of
        ready callbacks. The hub runs that queue in batches and stops to poll its
        timers and sockets only when a batch has run past the interpreter's switch
        interval (sys.getswitchinterval(), 5 ms), checking every 50 callbacks. So
        a loop yielding every 10 ms lets timers and I/O in about every 50 yields,
        here every half second: no better than not yielding.
        """,
        """
        出乎意料：sleep(0) 只是把 greenlet 排到 hub 的就绪回调队列末尾。hub 成批地运行
        这个队列，每 50 个回调检查一次，只有当一批回调运行的时间超过解释器的切换间隔
        （sys.getswitchinterval()，5 毫秒）时，才停下来轮询它的定时器和 socket。
        所以每 10 毫秒让出一次的循环，大约每让出 50 次才放定时器和 I/O 进来一次，
        在这里就是每半秒一次：和根本不让出差不多。
        """,
    )

    out.step(
        "The same loop, calling gevent.idle() every 10 ms",
        "同一个循环，每 10 毫秒调用一次 gevent.idle()",
    )
    with SwitchRecorder(
        "busy loop calling gevent.idle() every 10 ms", "每 10 毫秒调用一次 gevent.idle() 的忙循环"
    ) as timeline:
        idle = ticker_beside(busy_seconds, pause=gevent.idle)
    timelines.append(timeline)
    gap = idle["max_gap"]
    out.trace(f"longest gap between ticks: {gap:.3f} s", f"两次跳动之间的最长间隔：{gap:.3f} 秒")
    idle_batch = yields_until_timer_runs(gevent.idle)
    out.trace(
        f"a timer due at once ran after {idle_batch} gevent.idle() call(s)",
        f"一个立即到期的定时器，在 {idle_batch} 次 gevent.idle() 之后就运行了",
    )
    share = idle["work"] / blocking["work"]
    out.say(
        f"""
        gevent.idle() waits until the hub has run a full loop iteration, timers and
        I/O included; the ticker keeps close to its rhythm. In the same time the
        loop did {share:.0%} of the work it did while hogging the hub:
        yielding every 10 ms costs little. Still, every greenlet waits behind a
        computation for its share; give long computations to a process pool
        (under the GIL a thread would not help).
        """,
        f"""
        gevent.idle() 会等到 hub 跑完一整轮事件循环（event loop），定时器和 I/O 都包括在内；
        ticker 基本保持了它的节奏。同样的时间里，这个循环完成的工作量是独占 hub 时的
        {share:.0%}：每 10 毫秒让出一次，代价很小。不过每个 greenlet 仍要排在计算后面
        等自己的份额；耗时的计算请交给进程池（有 GIL 在，线程帮不上忙）。
        """,
    )
    return {
        "sleep_total": total,
        "blocking": blocking,
        "sleep0": sleep0,
        "sleep0_batch": batch,
        "idle": idle,
        "idle_batch": idle_batch,
        "timelines": timelines,
    }


def draw(result: dict[str, Any], path: Path, lang: str = "en") -> Path:
    """``--plot``: the ticker beside the busy loop, three ways, as pictures."""
    heading = {
        "en": "Lesson 3: a ticker (every 50 ms) beside a loop that computes",
        "zh": "第 3 课：一个 ticker（每 50 毫秒一次）与一个做计算的循环并排运行",
    }
    return draw_timelines(result["timelines"], path, heading[lang], lang)
