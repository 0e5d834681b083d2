"""What every reference server shares: its two flags, its start-up line, a clean exit."""

from __future__ import annotations

import argparse
import os
import signal
import sys


def parse_address(description: str) -> tuple[str, int]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7007)
    args = parser.parse_args()
    return args.host, args.port


def announce(address: tuple[str, int]) -> None:
    """The line the lab waits for before it sends any load."""
    print(f"listening on {address[0]}:{address[1]}", file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    """SIGTERM (how the lab stops servers) ends the process at once, with status 0.

    ``os._exit``, not ``sys.exit``: unwinding an event loop or thousands of
    threads can take long, and the kernel closes every socket anyway.
    """
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
