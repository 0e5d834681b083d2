"""The HTTP lab's load generators, run as processes: wrk for HTTP/1.1, h2load for HTTP/2.

Each run is one thread of load (the other core is the server's) on keep-alive
connections for a whole number of seconds; :func:`run` returns the same
figures whichever tool made them: requests per second, requests done, the
99th-percentile latency where the tool gives one, and errors (failed requests,
non-2xx answers, socket errors).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

#: The tool each protocol is driven with, and the Debian package it comes in.
TOOLS = {"h1": ("wrk", "wrk"), "h2c": ("h2load", "nghttp2-client")}
#: Streams each h2load connection keeps in flight (as h2load -m).
H2_STREAMS = 10


class LoadError(Exception):
    """The tool failed or is missing; ``str()`` says why in one line."""


def tool(protocol: str) -> str:
    """The path of the tool that drives ``protocol``, or :class:`LoadError`."""
    name, package = TOOLS[protocol]
    path = shutil.which(name)
    if path is None:
        raise LoadError(f"{name} is not installed (Debian: apt-get install {package})")
    return path


def run(
    protocol: str,
    port: int,
    target: str,
    connections: int,
    seconds: float,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """One load window against ``http://127.0.0.1:{port}{target}``; its figures. ``extra``:
    more of the tool's arguments (h2load's ``-d`` body file and ``-H`` headers, say)."""
    url = f"http://127.0.0.1:{port}{target}"
    whole = max(1, round(seconds))
    if protocol == "h1":
        command = [tool("h1"), "-t1", f"-c{connections}", f"-d{whole}s", "--latency", url]
    else:
        command = [tool("h2c"), "-t1", f"-c{connections}", f"-m{H2_STREAMS}", f"-D{whole}",
                   *extra, url]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    parse = _wrk if protocol == "h1" else _h2load
    figures = parse(result.stdout)
    if result.returncode != 0 or figures is None:
        raise LoadError(f"{command[0]} failed: {(result.stderr or result.stdout).strip()[:300]}")
    if figures["requests"] == 0 and figures["errors"] == 0:
        # h2load exits 0 having done nothing when it cannot connect.
        raise LoadError(f"{command[0]} failed: no request was answered by {url}")
    return figures


def _wrk(text: str) -> dict[str, Any] | None:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if rate is None or total is None:
        return None
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(total.group(1)),
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "errors": errors,
    }


def _h2load(text: str) -> dict[str, Any] | None:
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    counts = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if rate is None or counts is None or statuses is None:
        return None
    _, _, _, errored, timeout = (int(value) for value in counts.groups())
    not_2xx = sum(int(value) for value in statuses.groups()[1:])
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(statuses.group(1)),
        "p99_ms": None,  # h2load gives no percentiles
        "errors": errored + timeout + not_2xx,
    }
