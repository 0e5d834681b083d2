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


INTERRUPTIBLE = [
    ("geventsrv.bench", "--quick", "--out", "{out}"),
    ("geventsrv.bench", "soak", "--minutes", "1", "--out", "{out}"),
    ("geventsrv.bench", "tls", "--out", "{out}/tls.json"),
    ("geventsrv.bench", "capacity", "--out", "{out}"),
    ("geventsrv.bench", "hostile", "--out", "{out}/hostile.json"),
    ("geventsrv.bench", "ops", "--out", "{out}/ops.json"),
    ("geventsrv.tutorial", "--all"),
]


@pytest.mark.slow
@pytest.mark.parametrize("command", INTERRUPTIBLE, ids=lambda c: " ".join(c[:2]))
def test_ctrl_c_says_what_stopped_in_one_line_and_exits_130(command, tmp_path):
    """Ctrl-C reaches the command's whole process group, as a terminal sends it."""
    import os
    import signal
    import time

    if "tls" in command:
        from support import require_tool

        require_tool("haproxy", "haproxy")
    proc = subprocess.Popen(
        [sys.executable, "-m", *(part.format(out=tmp_path) for part in command)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    time.sleep(3)  # servers and load running
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].endswith(": interrupted; what it had started is stopped")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # nothing it started outlives it
        left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.2)
    assert not left.stdout.strip(), left.stdout


def test_number_types_accept_what_means_something_and_refuse_the_rest():
    import argparse

    from geventsrv import cmdline

    assert cmdline.seconds("0") == 0.0 and cmdline.count("0") == 0
    assert cmdline.positive_number("0.5") == 0.5 and cmdline.positive_int("3") == 3
    for kind, text in [
        (cmdline.seconds, "-1"), (cmdline.seconds, "inf"), (cmdline.positive_number, "0"),
        (cmdline.positive_number, "nan"), (cmdline.positive_int, "0"), (cmdline.count, "-1"),
        (cmdline.count, "1.5"),
    ]:  # fmt: skip
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)
