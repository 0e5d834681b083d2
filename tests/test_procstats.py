"""Process figures from /proc, and the status line: written and read back by the same module."""

from __future__ import annotations

import os
import subprocess
import sys

from geventsrv import procstats


def test_status_line_round_trips():
    figures = {"connections": 3, "greenlets": 9, "descriptors": 12, "rss_kib": 4096, "accepted": 7}
    line = "2026-01-01 INFO geventsrv.server: " + procstats.format_status(figures)
    assert procstats.parse_status(line) == figures


def test_parse_status_ignores_other_lines():
    assert procstats.parse_status("listening on 127.0.0.1:7007 (mode=echo)") is None


def test_own_figures_are_plausible():
    before = procstats.open_descriptors()
    with open(os.devnull):
        assert procstats.open_descriptors() == before + 1
    assert procstats.open_descriptors() == before
    assert 1 << 20 < procstats.rss_bytes() < 1 << 32


def test_live_greenlets_counts_started_unfinished_ones():
    from greenlet import getcurrent, greenlet

    main = getcurrent()
    before = procstats.live_greenlets()
    parked = greenlet(lambda: main.switch())
    parked.switch()  # runs until it switches back: started, not finished
    assert procstats.live_greenlets() == before + 1
    parked.switch()  # let it finish
    assert parked.dead and procstats.live_greenlets() == before


def test_live_greenlets_walks_past_a_dead_weakref_proxy():
    import weakref

    class Thing:
        pass

    before = procstats.live_greenlets()
    thing = Thing()
    proxies = [weakref.proxy(thing)]  # tracked by the collector, and soon dangling
    del thing
    assert procstats.live_greenlets() == before and len(proxies) == 1


def test_cpu_time_and_tree_of_a_child_process():
    """A child that spins for 0.3 s of CPU shows up in the parent's tree with that much CPU.

    /proc counts CPU time in clock ticks (10 ms), sampled: the child's own
    clock and /proc's may differ by a tick or two, so the child says what it
    spent and /proc must agree within three ticks, however busy the machine.
    """
    code = (
        "import sys, time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print(time.process_time(), flush=True)\n"
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        spent = float(child.stdout.readline())  # the child has spun, and now sleeps
        tick = 1 / os.sysconf("SC_CLK_TCK")
        assert spent - 3 * tick <= procstats.cpu_seconds(child.pid) <= spent + 3 * tick
        assert child.pid in procstats.process_tree(os.getpid())
        assert procstats.process_tree(child.pid) == [child.pid]
        assert procstats.open_descriptors(child.pid) >= 3
    finally:
        child.kill()
        child.wait()
    assert procstats.cpu_seconds(child.pid) == 0.0  # gone
    assert procstats.rss_bytes(child.pid) == 0
