"""Figures of a process: resident memory, descriptors, CPU time, greenlets; the status line.

Read from ``/proc`` for any process (the lab, the soak and the tests read a
server's figures from outside), and, for the running process itself, live
greenlets from the garbage collector. The status line a server logs on
SIGUSR1 is written by :func:`format_status` and read back by
:func:`parse_status`: one format, kept in one place.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re

_STATUS_FORMAT = (
    "status: {connections} connection(s) open, {greenlets} greenlet(s), "
    "{descriptors} descriptor(s), RSS {rss_kib} KiB, {accepted} accepted"
)
_STATUS = re.compile(
    r"status: (?P<connections>\d+) connection\(s\) open, (?P<greenlets>\d+) greenlet\(s\), "
    r"(?P<descriptors>-?\d+) descriptor\(s\), RSS (?P<rss_kib>\d+) KiB, (?P<accepted>\d+) accepted"
)


def format_status(figures: dict[str, int]) -> str:
    """The status line for ``figures`` (the dict :func:`snapshot` returns)."""
    return _STATUS_FORMAT.format(**figures)


def parse_status(line: str) -> dict[str, int] | None:
    """The figures in a status line (anywhere in ``line``), or ``None`` if it holds none."""
    match = _STATUS.search(line)
    if match is None:
        return None
    return {key: int(value) for key, value in match.groupdict().items()}


def live_greenlets() -> int:
    """Greenlets of this process that have not finished.

    Walks every object the garbage collector tracks: for occasional use
    (a status request), not for a hot path.
    """
    from greenlet import greenlet

    # type(), not isinstance(): isinstance() asks a weakref proxy for its __class__,
    # which raises ReferenceError once the object it stood for is gone.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), greenlet) and not obj.dead)


def open_descriptors(pid: int | str = "self") -> int:
    """Descriptors the process holds (from ``/proc``); -1 where that cannot be read."""
    try:
        count = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1
    # Listing our own descriptors opens one more for the listing itself.
    return count - 1 if pid in ("self", os.getpid()) else count


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of the process (``VmRSS``), 0 if it is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _stat_fields(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces and parentheses: split after its ")".
        return stat.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU time the process has used, 0.0 if it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a supervisor's workers), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat_fields(entry)[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def snapshot(connections: int, accepted: int) -> dict[str, int]:
    """This process's status figures, with the server's own two counts."""
    return {
        "connections": connections,
        "greenlets": live_greenlets(),
        "descriptors": open_descriptors(),
        "rss_kib": rss_bytes() // 1024,
        "accepted": accepted,
    }
