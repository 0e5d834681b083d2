"""The voice of the lessons: numbered steps, code shown as it runs, measured timings."""

from __future__ import annotations

import inspect
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class Narrator:
    """Prints a lesson's trace and keeps every line, so tests can read what a learner reads."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.lines: list[str] = []
        self._step = 0

    def say(self, text: str = "") -> None:
        """One paragraph of narration (dedented, printed as is)."""
        for line in textwrap.dedent(text).strip("\n").splitlines() or [""]:
            self._emit(line)

    def title(self, text: str) -> None:
        """Start a lesson: its heading, and step numbers from 1 again."""
        self._step = 0
        self._emit("")
        self._emit(text)
        self._emit("=" * len(text))

    def step(self, text: str) -> None:
        """Start a numbered step."""
        self._step += 1
        self._emit("")
        self._emit(f"{self._step}. {text}")

    def trace(self, text: str) -> None:
        """A line produced by the running example, indented under its step."""
        self._emit(f"   | {text}")

    def code(self, obj: Callable[..., Any] | str) -> None:
        """Show a function's source (or a snippet) exactly as it will run."""
        source = obj if isinstance(obj, str) else inspect.getsource(obj)
        for line in textwrap.dedent(source).rstrip().splitlines():
            self._emit(f"   > {line}")

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.stream, flush=True)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed:`` ... ``elapsed()`` is the seconds taken (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
