"""System calls a server makes per request, counted by the kernel's tracepoints (``perf stat``).

Counting from outside with ``perf stat -e syscalls:sys_enter_*`` costs the
server almost nothing, unlike ``strace``, whose overhead slows the server so
much that replies are already waiting when it reads, and the failing reads
this is meant to count disappear. Needs ``perf`` and permission to trace
(root, or ``kernel.perf_event_paranoid`` low enough); :func:`available` says
why not where it cannot run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess

#: The calls an echo server's hot path may make, and the allocator's.
WATCHED = (
    "recvfrom",
    "sendto",
    "read",
    "write",
    "getsockopt",
    "getpid",
    "epoll_wait",
    "epoll_ctl",
    "mmap",
    "munmap",
    "mremap",
    "brk",
)


def available() -> str:
    """``""`` if system calls can be counted here, else why not."""
    if shutil.which("perf") is None:
        return "perf is not installed (Debian: linux-perf)"
    probe = subprocess.run(
        ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode or "not supported" in probe.stderr or "<not" in probe.stderr:
        return "perf cannot read syscall tracepoints here: " + probe.stderr.strip()[-200:]
    return ""


def count(pids: list[int], seconds: float) -> dict[str, int]:
    """System calls made by ``pids`` over the next ``seconds``: ``total`` and each of WATCHED."""
    return count_during(pids, ["sleep", str(seconds)], timeout=seconds + 30)


def count_during(pids: list[int], command: list[str], timeout: float = 60) -> dict[str, int]:
    """System calls made by ``pids`` while ``command`` runs (e.g. a client doing N requests)."""
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{name}" for name in WATCHED]
    done = subprocess.run(
        ["perf", "stat", "-x,", "-e", ",".join(events), "-p", ",".join(map(str, pids)),
         "--", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for line in done.stderr.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue
        event = fields[2]
        name = "total" if event == "raw_syscalls:sys_enter" else event.rsplit("_", 1)[-1]
        if event.startswith("syscalls:sys_enter_"):
            name = event[len("syscalls:sys_enter_") :]
        counts[name] = int(fields[0])
    return counts


def strace_unavailable() -> str:
    """``""`` if ``strace`` can attach to a process here, else why not."""
    if shutil.which("strace") is None:
        return "strace is not installed (Debian: strace)"
    probe = subprocess.run(["strace", "-c", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode:
        return "strace cannot trace here: " + probe.stderr.decode(errors="replace")[-200:]
    return ""


def count_with_strace(pid: int, command: list[str], timeout: float = 60) -> dict[str, int]:
    """Like :func:`count_during`, with ``strace -c -f`` attached to ``pid`` (and its threads).

    strace stops the process at every call, so a server under load slows
    down and may find data already waiting where it would have waited; with
    a client that pauses between requests the calls are the same.
    """
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-p", str(pid)], stderr=subprocess.PIPE, text=True
    )
    assert tracer.stderr is not None
    attached = tracer.stderr.readline()  # "strace: Process N attached"
    if "attached" not in attached:
        tracer.kill()
        raise RuntimeError(f"strace did not attach: {attached.strip()}")
    try:
        subprocess.run(command, timeout=timeout, check=True)
    finally:
        tracer.send_signal(signal.SIGINT)  # detach and print the summary
        summary = tracer.communicate(timeout=30)[1]
    counts: dict[str, int] = {}
    for line in summary.splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(fields) >= 5 and fields[3].isdigit() and not fields[-1].startswith("-"):
            name = "total" if fields[-1] == "total" else fields[-1]
            counts[name] = int(fields[3])
    return counts
