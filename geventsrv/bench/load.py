"""The lab's load generators behind one interface, and the one place that picks C or Python.

A :class:`LoadGenerator` is a process holding a share of the connections: it
connects (:meth:`~LoadGenerator.ready`), runs the closed loop over a
measurement window (:meth:`~LoadGenerator.run`) and reports what it saw
(:meth:`~LoadGenerator.result`). Two kinds exist: the C generator
(:class:`geventsrv.bench.cload.LoadProcess`, cheap enough not to be the
bottleneck) and the Python one (:class:`PythonLoad`, which needs no compiler).
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Protocol

from geventsrv.bench import cload
from geventsrv.bench.loadgen import WorkerResult, run_worker

CLIENTS = ("auto", "c", "python")


class LoadGenerator(Protocol):
    """A load process: connect, one measurement window, a result."""

    def ready(self) -> int:
        """Wait until connected; the number of connections that failed to open."""

    def run(self, window_start: float, window_end: float) -> None:
        """Start the closed loop, counting what completes between the two monotonic times."""

    def result(self) -> WorkerResult:
        """Wait for the window to end and return what the process saw."""


class PythonLoad:
    """A :func:`~geventsrv.bench.loadgen.run_worker` process, as a :class:`LoadGenerator`."""

    def __init__(self, address: tuple[str, int], connections: int, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=run_worker, args=(address, connections, size, theirs))
        self.process.start()
        self.window_end = 0.0

    def ready(self) -> int:
        return int(_expect(self.pipe, "ready", 120))

    def run(self, window_start: float, window_end: float) -> None:
        self.window_end = window_end
        self.pipe.send((window_start, window_end))

    def result(self) -> WorkerResult:
        result: WorkerResult = _expect(self.pipe, "done", self.window_end - time.monotonic() + 60)
        self.process.join(10)
        return result


def _expect(pipe: Any, tag: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"load worker sent no {tag!r} within {timeout:g} s")
    got, value = pipe.recv()
    if got != tag:
        raise RuntimeError(f"load worker sent {got!r}, expected {tag!r}")
    return value


def choose_client(requested: str) -> str:
    """``"c"`` or ``"python"`` for a ``--client`` of auto, c or python.

    ``auto`` falls back to Python where the C generator cannot be built;
    ``c`` raises :class:`~geventsrv.bench.cload.BuildError` there instead.
    """
    if requested == "python":
        return "python"
    try:
        cload.build()
    except (cload.BuildError, OSError) as exc:
        if requested == "c":
            raise cload.BuildError(str(exc)) from None
        return "python"
    return "c"


def start_load(
    client: str, address: tuple[str, int], connections: int, size: int, seed: int = 0
) -> LoadGenerator:
    """Start one load process of kind ``client`` (``"c"`` or ``"python"``)."""
    if client == "c":
        return cload.LoadProcess(address, connections, size, seed)
    return PythonLoad(address, connections, size)
