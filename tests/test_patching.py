"""patch_all() with the entry points read once: the same patching, the same plugins called.

Each check runs in a fresh interpreter, since patching cannot be undone. The
plugin is a real installed distribution (a ``.dist-info`` directory with an
``entry_points.txt``) that importlib.metadata finds on ``sys.path``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support import ROOT

PLUGIN = """
CALLS = []

def will_patch_all(event):
    CALLS.append(("will_patch_all", type(event).__name__))

def did_patch_module(event):
    CALLS.append(("did_patch_module", event.module_name))
"""

CHECK = """
import sys
sys.path[:0] = [{plugin_dir!r}, {root!r}]
from geventsrv.patching import patch_all
from importlib import metadata
before = metadata.entry_points
patch_all()
import socket, threading, time
from gevent import monkey
import recorder
assert monkey.is_module_patched("socket") and monkey.is_module_patched("threading")
assert metadata.entry_points is before, "entry_points left replaced"
print(recorder.CALLS)
"""


def install_plugin(directory: Path) -> None:
    (directory / "recorder.py").write_text(PLUGIN)
    info = directory / "recorder-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gevent.plugins.monkey.will_patch_all]\nrecorder = recorder:will_patch_all\n\n"
        "[gevent.plugins.monkey.did_patch_module]\nrecorder = recorder:did_patch_module\n"
    )


def test_patch_all_patches_and_calls_the_plugins_gevent_would(tmp_path):
    install_plugin(tmp_path)
    script = CHECK.format(plugin_dir=str(tmp_path), root=str(ROOT))
    ours = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert ours.returncode == 0, ours.stderr
    gevents = subprocess.run(
        [sys.executable, "-c", script.replace(
            "from geventsrv.patching import patch_all", "from gevent.monkey import patch_all"
        )],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert gevents.returncode == 0, gevents.stderr
    calls = ast.literal_eval(ours.stdout)
    assert calls == ast.literal_eval(gevents.stdout)
    assert ("will_patch_all", "GeventWillPatchAllEvent") in calls
    assert ("did_patch_module", "socket") in calls
    assert "Warning" not in ours.stderr, ours.stderr
