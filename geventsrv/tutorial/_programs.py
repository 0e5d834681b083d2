"""Lesson servers run as programs of their own, so a lesson can look at them from outside."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def running_program(module: str) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """``python -m module 0`` running: the process, the port it announced on its first
    line (``listening on port N``), and that line. Stopped when the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", module, "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        yield proc, int(line.split()[-1]), line.strip()
    finally:
        proc.terminate()
        proc.wait(10)
