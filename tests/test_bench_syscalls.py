"""System calls per echoed request, counted by the kernel: the fast path makes two.

Counts, not timings: how many system calls a request costs does not depend on
how fast the machine is. Skips, with the reason, where perf cannot read the
syscall tracepoints (not installed, or not permitted).
"""

from __future__ import annotations

import pytest

from geventsrv.bench import lab, syscalls
from geventsrv.bench.load import choose_client

WHY_NOT = syscalls.available()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)

SPECS = {spec.name: spec for spec in lab.catalog()}


def per_request(name: str) -> dict[str, float]:
    run = lab.measure(
        SPECS[name], 1024, 50, duration=1.0, warmup=0.3, client=choose_client("auto"),
        count_syscalls=True,
    )  # fmt: skip
    assert run["mismatches"] == 0 and run["errors"] == 0
    return run["syscalls"]


def test_fast_path_two_system_calls_per_echo():
    calls = per_request("geventsrv")
    assert 1.8 <= calls["total"] <= 2.3, calls
    assert calls.get("getsockopt", 0) < 0.01, calls  # no SO_SNDBUF query per reply


def test_patched_path_four_system_calls_per_echo():
    calls = per_request("geventsrv-patched")
    assert calls["total"] >= 3.5, calls
    assert calls["recvfrom"] >= 1.8 * calls["sendto"], calls  # one recv fails with EAGAIN
    assert calls.get("getsockopt", 0) >= 0.9, calls


def test_the_warm_up_spares_asyncio_an_mmap_per_request():
    unsettled = lab.measure(
        SPECS["asyncio-protocol"], 1024, 50, duration=1.0, warmup=0.3,
        client=choose_client("auto"), count_syscalls=True, settle=False,
    )["syscalls"]  # fmt: skip
    settled = per_request("asyncio-protocol")
    assert unsettled.get("mmap", 0) >= 0.9, unsettled  # a 256 KiB read buffer mapped each time
    assert settled.get("mmap", 0) < 0.05, settled
