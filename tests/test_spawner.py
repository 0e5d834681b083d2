"""The greenlet spawner, in-process under gevent's real hub, with a fake clock for its budget."""

from __future__ import annotations

import gevent

from geventsrv.spawner import GreenletSpawner


class StepClock:
    """Advances by ``step`` seconds every time a started greenlet runs."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now


def test_greenlets_start_in_order_within_one_turn_when_the_budget_allows():
    ran: list[int] = []
    spawner = GreenletSpawner()
    greenlets = [gevent.Greenlet(ran.append, n) for n in range(50)]
    for greenlet in greenlets:
        spawner.start(greenlet)
    assert ran == []  # nothing runs until the hub's next turn
    gevent.idle()
    assert ran == list(range(50))
    spawner.close()


def test_a_spent_budget_leaves_the_rest_for_the_next_turns():
    clock = StepClock(0.015)
    loop = gevent.get_hub().loop
    turn_of: dict[int, int] = {}
    spawner = GreenletSpawner(clock=clock)

    def work(n: int) -> None:
        clock.now += clock.step  # each greenlet "takes" 15 ms of the 20 ms budget
        turn_of[n] = loop.iteration

    for n in range(5):
        spawner.start(gevent.Greenlet(work, n))
    gevent.idle()  # runs once nothing else is pending: every start is done
    first = turn_of[0]
    # 0 ms, then 15 ms: under budget; at 30 ms the turn is over. Two per turn.
    assert [turn_of[n] - first for n in range(5)] == [0, 0, 1, 1, 2]
    spawner.close()


def test_a_greenlet_killed_before_its_turn_never_runs():
    ran: list[str] = []
    spawner = GreenletSpawner()
    doomed = gevent.Greenlet(ran.append, "doomed")
    spawner.start(doomed)
    spawner.start(gevent.Greenlet(ran.append, "kept"))
    doomed.kill()
    gevent.idle()
    assert ran == ["kept"] and doomed.dead
    spawner.close()
