"""What every geventsrv command shares: its argument parser and how it ends.

* :class:`Parser` turns a usage error into one line and exit code 2, not the
  usage block, and gives every command ``--version``;
* :func:`run` runs a command's ``main`` and ends quietly when the reader of
  standard output goes away (``| head``), as ``cat`` would, instead of a
  ``BrokenPipeError`` traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

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


def run(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())``, but a closed standard output ends the command quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point
        # stdout at /dev/null first (the recipe of the signal module's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = exitcodes.BROKEN_PIPE
    sys.exit(code)
