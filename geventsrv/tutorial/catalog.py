"""The lessons in reading order, and how to find one by name or number."""

from __future__ import annotations

import importlib
from types import ModuleType

#: (name on the command line, module in this package), in reading order.
LESSONS: list[tuple[str, str]] = [
    ("switching", "geventsrv.tutorial.switching"),
    ("tracing", "geventsrv.tutorial.tracing"),
    ("scheduling", "geventsrv.tutorial.scheduling"),
    ("monkeypatching", "geventsrv.tutorial.monkeypatching"),
    ("echo_server", "geventsrv.tutorial.echo_server"),
    ("io_models", "geventsrv.tutorial.io_models"),
    ("event_loops", "geventsrv.tutorial.event_loops"),
    ("asyncio", "geventsrv.tutorial.asyncio_side_by_side"),
    ("protocols", "geventsrv.tutorial.protocols"),
]


class UnknownLesson(LookupError):
    """No lesson has that name or number; ``str()`` lists the valid ones."""


def load(name_or_number: str) -> tuple[str, ModuleType]:
    """Return ``(name, module)`` for a lesson given as ``tracing``, ``2`` or ``echo-server``."""
    wanted = name_or_number.strip().lower().replace("-", "_")
    for number, (name, module) in enumerate(LESSONS, start=1):
        if wanted in (name, str(number)):
            return name, importlib.import_module(module)
    names = ", ".join(name for name, _ in LESSONS)
    raise UnknownLesson(
        f"no lesson {name_or_number!r}; choose one of: {names} (or 1-{len(LESSONS)})"
    )


def summaries(lang: str = "en") -> list[tuple[int, str, str]]:
    """``(number, name, one-line summary)`` for every lesson, the summary in ``lang``."""
    attribute = "SUMMARY" if lang == "en" else f"SUMMARY_{lang.upper()}"
    return [
        (number, name, getattr(importlib.import_module(module), attribute))
        for number, (name, module) in enumerate(LESSONS, start=1)
    ]
