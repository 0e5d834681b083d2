"""Greenlets kept for short jobs: a stream's request runs in one, which then waits for the next.

A new greenlet costs its first switch (its stack is made then): about 10 µs
with gevent's own ``Greenlet`` and ``spawn`` around it, 20 on this kind of
machine, against a few for the whole of a small HTTP/2 answer. A parked
greenlet takes the next job for the cost of one switch from the hub. So the
HTTP/2 front hands each stream to :meth:`Workers.start`, which takes a parked
greenlet or makes one, and a greenlet whose job is done parks again, up to
``keep`` of them (the rest end).

A job is a plain callable that handles its own exceptions. :meth:`Job.interrupt`
throws an exception into the greenlet running it, and only while it still runs
that job: a greenlet parked, or running the next job, is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import greenlet
from gevent import get_hub

#: Greenlets kept parked, at most, per hub.
KEEP = 256


class Job:
    """One job, handed to a worker greenlet (:meth:`Workers.start`)."""

    __slots__ = ("done", "run", "worker")

    def __init__(self, run: Callable[[], None]) -> None:
        self.run = run
        self.worker: Any = None
        self.done = False

    def interrupt(self, error: BaseException) -> None:
        """Throw ``error`` into the job, from the hub's next turn, if it still runs then."""
        if not self.done:
            get_hub().loop.run_callback(self._throw, error)

    def _throw(self, error: BaseException) -> None:
        worker = self.worker
        if not self.done and worker is not None and worker.current is self:
            worker.throw(error)


class Worker(greenlet.greenlet):
    """A greenlet that runs jobs, parked in the hub between them."""

    def __init__(self, workers: Workers) -> None:
        super().__init__(self._serve, parent=workers.hub)
        self.workers = workers
        self.current: Job | None = None

    def _serve(self, job: Job) -> None:
        workers, hub = self.workers, self.workers.hub
        while True:
            self.current = job
            try:
                job.run()
            finally:
                job.done = True
                self.current = None
            if len(workers.idle) >= workers.keep:
                return  # enough are parked: this one ends
            workers.idle.append(self)
            job = hub.switch()  # parked: the next job comes from start()


class Workers:
    """The parked worker greenlets of one hub."""

    def __init__(self, keep: int = KEEP) -> None:
        self.hub = get_hub()
        self.keep = keep
        self.idle: list[Worker] = []

    def start(self, run: Callable[[], None]) -> Job:
        """Run ``run`` in a worker greenlet, from the hub's next turn; its :class:`Job`."""
        job = Job(run)
        worker = self.idle.pop() if self.idle else Worker(self)
        job.worker = worker
        self.hub.loop.run_callback(worker.switch, job)
        return job


_workers: dict[int, Workers] = {}


def workers() -> Workers:
    """The :class:`Workers` of the current thread's hub."""
    hub = get_hub()
    found = _workers.get(id(hub))
    if found is None or found.hub is not hub:
        found = _workers[id(hub)] = Workers()
    return found
