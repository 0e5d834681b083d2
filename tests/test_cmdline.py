"""What every command shares: one-line usage errors, --version, a quiet end on a closed stdout."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT

from geventsrv import __version__

COMMANDS = [
    ("geventsrv",),
    ("geventsrv.client",),
    ("geventsrv.tutorial",),
    ("geventsrv.bench",),
    ("geventsrv.bench", "soak"),
    ("geventsrv.bench", "capacity"),
    ("geventsrv.bench", "tls"),
    ("geventsrv.bench", "ops"),
    ("geventsrv.bench", "hostile"),
    ("geventsrv.top", "127.0.0.1:1"),
]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_version(command):
    result = run(*command, "--version")
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_rejects_an_unknown_flag_in_one_line(command):
    result = run(*command, "--no-such-flag")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "unrecognized arguments: --no-such-flag" in result.stderr


def test_a_closed_stdout_ends_a_command_quietly():
    """``python -m geventsrv.tutorial 2 | head -1``: the reader goes, no traceback follows."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "geventsrv.tutorial", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its first line
    stderr = proc.stderr.read().decode()
    code = proc.wait(60)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert code == 141
