"""What every geventsrv command shares: its argument parser and how it ends.

* :class:`Parser` turns a usage error into one line and exit code 2, not the
  usage block, and gives every command ``--version``;
* :func:`run` runs a command's ``main`` and ends quietly when the reader of
  standard output goes away (``| head``), as ``cat`` would, instead of a
  ``BrokenPipeError`` traceback; and on Ctrl-C with one line saying so and
  exit code 130, not a ``KeyboardInterrupt`` traceback. What the command
  started (servers, load generators) is stopped on the way out by the
  context managers that started it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from geventsrv import __version__, exitcodes


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2) and a ``--version`` flag."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        # No abbreviations: a flag misspelt as a prefix of another (--scenario for
        # --scenarios) is an error, not silently the other flag.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # "geventsrv 0.1.0", "python -m geventsrv.client (geventsrv) 0.1.0"
        package = "" if self.prog == "geventsrv" else " (geventsrv)"
        self.add_argument("--version", action="version", version=f"%(prog)s{package} {__version__}")

    def error(self, message: str) -> NoReturn:
        self.exit(exitcodes.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _number(text: str, kind: type[int] | type[float], low: float, strictly: bool, what: str) -> Any:
    """``text`` as ``kind``, above ``low`` (or at least ``low``) and finite; else a usage error."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (value > low if strictly else value >= low) or not value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (seconds, rates)."""
    return _number(text, float, 0.0, True, "a positive number")  # type: ignore[no-any-return]


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more (0: none)."""
    return _number(text, float, 0.0, False, "a number of seconds, 0 or more")  # type: ignore[no-any-return]


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _number(text, int, 1, False, "a whole number of at least 1")  # type: ignore[no-any-return]


def count(text: str) -> int:
    """An argparse type: a whole number, 0 or more (0 usually skips something)."""
    return _number(text, int, 0, False, "a whole number, 0 or more")  # type: ignore[no-any-return]


def quiet_ctrl_c_in_greenlets() -> None:
    """Ctrl-C ends the program in its main greenlet without a traceback from another one.

    Python raises KeyboardInterrupt in whichever greenlet is running; gevent's
    hub prints that greenlet's traceback, then passes the interrupt on to the
    main greenlet. In a program's own greenlets (a lesson's, a server's
    connections) an interrupt is not an error to report, only the end of the run.
    """
    from gevent.hub import Hub

    if KeyboardInterrupt not in Hub.NOT_ERROR:
        Hub.NOT_ERROR = (*Hub.NOT_ERROR, KeyboardInterrupt)


def run(main: Callable[[], int], prog: str) -> NoReturn:
    """``sys.exit(main())``, but a closed standard output or Ctrl-C ends ``prog`` in one line."""
    try:
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; what it had started is stopped", file=sys.stderr)
        code = exitcodes.INTERRUPTED
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point
        # stdout at /dev/null first (the recipe of the signal module's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = exitcodes.BROKEN_PIPE
    sys.exit(code)
