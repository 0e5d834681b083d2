"""Worker greenlets kept between short jobs, under gevent's real hub (the test process is not
monkey-patched: the jobs only sleep and switch)."""

from __future__ import annotations

import gevent

from geventsrv.http.workers import Workers


def test_jobs_run_and_their_greenlets_are_kept_for_the_next():
    workers = Workers(keep=4)
    seen: list[object] = []
    for _ in range(3):
        workers.start(lambda: seen.append(gevent.getcurrent()))
        gevent.sleep(0)
    assert len(seen) == 3 and len(set(seen)) == 1  # one greenlet took all three
    assert workers.idle == [seen[0]]


def test_no_more_than_keep_are_kept():
    workers = Workers(keep=2)
    for _ in range(5):
        workers.start(lambda: gevent.sleep(0.01))  # all five run at once
    gevent.sleep(0.05)
    assert len(workers.idle) == 2


def test_an_interrupt_reaches_the_job_and_only_while_it_runs():
    workers = Workers(keep=4)
    outcomes: list[str] = []

    def waits() -> None:
        try:
            gevent.sleep(5)
            outcomes.append("slept")
        except KeyError:
            outcomes.append("interrupted")

    job = workers.start(waits)
    gevent.sleep(0.01)
    job.interrupt(KeyError("stop"))
    gevent.sleep(0.01)
    assert outcomes == ["interrupted"] and job.done
    job.interrupt(KeyError("late"))  # the greenlet now waits for its next job: left alone
    nxt = workers.start(lambda: outcomes.append("next job"))
    gevent.sleep(0.01)
    assert outcomes == ["interrupted", "next job"] and nxt.worker is job.worker
