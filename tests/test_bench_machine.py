"""The machine fingerprint published with every lab result."""

from __future__ import annotations

import os
import platform

import gevent
import greenlet

from geventsrv.bench import machine


def test_fingerprint_names_what_the_figures_depend_on():
    figures = machine.fingerprint()
    assert figures["cpus"] == os.cpu_count()
    assert figures["kernel"] == platform.release()
    assert str(figures["python"]).endswith(platform.python_version())
    assert figures["gevent"] == gevent.__version__
    assert figures["greenlet"] == greenlet.__version__
    assert figures["gevent_loop"] in ("libev.corecext", "libev.corecffi", "libuv.loop")
    assert figures["cpu"]


def test_describe_is_one_line_with_every_part():
    line = machine.describe(machine.fingerprint())
    assert "\n" not in line
    for part in ("cores", "Linux", "gevent", "greenlet", platform.python_version()):
        assert part in line
