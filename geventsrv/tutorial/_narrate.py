"""The voice of the lessons: numbered steps, code shown as it runs, measured timings."""

from __future__ import annotations

import inspect
import sys
import textwrap
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

#: The languages every lesson narrates in; the first is the default.
LANGUAGES = ("en", "zh")


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a CJK character takes two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


class Narrator:
    """Prints a lesson's trace and keeps every line, so tests can read what a learner reads.

    Narration comes in every language the tutorial speaks (:data:`LANGUAGES`),
    side by side at the call: ``say(en, zh)``; the narrator prints the one of
    ``lang``. A line that is data, not words (a program's output), is given once.
    """

    def __init__(self, stream: TextIO | None = None, lang: str = "en") -> None:
        if lang not in LANGUAGES:
            raise ValueError(
                f"no narration in {lang!r}; the tutorial speaks {', '.join(LANGUAGES)}"
            )
        self.stream = stream if stream is not None else sys.stdout
        self.lang = lang
        self.lines: list[str] = []
        self._step = 0

    def pick(self, en: str, zh: str) -> str:
        """The text in this narrator's language."""
        return zh if self.lang == "zh" and zh else en

    def say(self, en: str = "", zh: str = "") -> None:
        """One paragraph of narration (dedented, printed as is)."""
        text = self.pick(en, zh)
        for line in textwrap.dedent(text).strip("\n").splitlines() or [""]:
            self._emit(line)

    def title(self, en: str, zh: str = "") -> None:
        """Start a lesson: its heading, and step numbers from 1 again."""
        text = self.pick(en, zh)
        self._step = 0
        self._emit("")
        self._emit(text)
        self._emit("=" * display_width(text))

    def step(self, en: str, zh: str = "") -> None:
        """Start a numbered step."""
        self._step += 1
        self._emit("")
        self._emit(f"{self._step}. {self.pick(en, zh)}")

    def trace(self, text: str, zh: str | None = None) -> None:
        """A line produced by the running example, indented under its step (in words:
        both languages; a program's own output: once)."""
        self._emit(f"   | {text if zh is None else self.pick(text, zh)}")

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
