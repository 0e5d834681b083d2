"""The fingerprint of the machine a measurement ran on, recorded with every result.

Rankings between IO models depend on the machine: on two machines of the same
kind, Python-heavy paths (greenlet switches, exceptions) differed by 3x while
system calls did not. So every published figure carries what it was measured
on: CPU model, cores, kernel, Python, gevent, greenlet and gevent's loop.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint() -> dict[str, str | int | None]:
    """What the figures depend on, as a flat dict (JSON-ready)."""
    import gevent
    import greenlet

    loop = gevent.config.loop
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "gevent": gevent.__version__,
        "greenlet": greenlet.__version__,
        "gevent_loop": loop.__module__.replace("gevent.", ""),
    }


def describe(figures: dict[str, str | int | None]) -> str:
    """One line for a report: ``AMD EPYC, 2 cores, Linux 6.18, CPython 3.11.7, ...``."""
    return (
        f"{figures.get('cpu')}, {figures.get('cpus')} cores, Linux {figures.get('kernel')}, "
        f"{figures.get('python')}, gevent {figures.get('gevent')} "
        f"({figures.get('gevent_loop')}), greenlet {figures.get('greenlet')}"
    )
