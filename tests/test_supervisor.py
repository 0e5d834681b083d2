"""``--workers N``: several processes on one port, restarted when they die, drained together."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time

import psutil
import pytest
from support import ServerProcess, recv_until_eof, wait_until

from geventsrv.procstats import parse_status

_WORKER = re.compile(r" worker (\d+) ")


def _workers(server) -> list[psutil.Process]:
    return psutil.Process(server.pid).children()


def _accepted_by_worker(server) -> dict[int, int]:
    """Ask every worker for its status (SIGUSR1 to the supervisor) and read its accepted count."""
    seen = len(server.lines)
    server.send_signal(signal.SIGUSR1)
    counts: dict[int, int] = {}

    def answered() -> bool:
        for line in server.lines[seen:]:
            figures, worker = parse_status(line), _WORKER.search(line)
            if figures and worker:
                counts[int(worker.group(1))] = figures["accepted"]
        return len(counts) == 2

    assert wait_until(answered), server.stderr
    return counts


@pytest.fixture
def two_workers(start_server):
    server = start_server("--workers", "2")
    assert wait_until(lambda: server.stderr.count("listening on") == 2), server.stderr
    return server


def test_connections_are_spread_over_the_workers(two_workers):
    for _ in range(200):  # new source port each time: the kernel's hash picks a worker
        two_workers.round_trip(b"ping")
    counts = _accepted_by_worker(two_workers)
    assert sum(counts.values()) == 200
    assert min(counts.values()) >= 40, counts  # both serve, roughly evenly
    assert len(_workers(two_workers)) == 2


def test_a_worker_killed_with_sigkill_is_replaced_and_the_port_keeps_answering(two_workers):
    victim = _workers(two_workers)[0]
    victim.kill()
    two_workers.wait_for_log(rf"worker \d \(pid {victim.pid}\) was killed by SIGKILL")
    for _ in range(50):  # served by the survivor meanwhile, then by both
        two_workers.round_trip(b"ping")
    assert wait_until(lambda: two_workers.stderr.count("listening on") == 3, timeout=15)
    pids = {worker.pid for worker in _workers(two_workers)}
    assert len(pids) == 2 and victim.pid not in pids
    before = _accepted_by_worker(two_workers)
    for _ in range(100):
        two_workers.round_trip(b"ping")
    after = _accepted_by_worker(two_workers)
    assert all(after[worker] > before[worker] for worker in after), (before, after)


def test_sigterm_drains_every_worker_then_exits_0(two_workers, rng):
    payloads = [rng.randbytes(512 * 1024) for _ in range(20)]
    results: list[bytes] = [b""] * len(payloads)
    socks = [two_workers.connect() for _ in payloads]
    assert wait_until(lambda: sum(_accepted_by_worker(two_workers).values()) == 20)
    go = threading.Event()

    def client(index: int) -> None:
        sock = socks[index]
        reader = threading.Thread(
            target=lambda: results.__setitem__(index, recv_until_eof(sock)), daemon=True
        )
        reader.start()
        go.wait(10)
        sock.sendall(payloads[index])
        sock.shutdown(socket.SHUT_WR)
        reader.join(30)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    two_workers.send_signal(signal.SIGTERM)
    two_workers.wait_for_log(r"draining every worker")
    time.sleep(0.2)
    go.set()  # the transfers run while both workers drain
    for thread in threads:
        thread.join(40)
    assert two_workers.wait(30) == 0
    assert results == payloads
    assert "every worker has exited (exit codes [0, 0])" in two_workers.stderr
    for sock in socks:
        sock.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: must be a whole number from 1 to 1024"),
        (["--workers", "many"], "at least 1 or 'auto'"),
        (["--workers", "2", "--mode", "chat"], "chat mode keeps its state in one process"),
        (["--workers", "2", "--udp"], "UDP echo runs in one process"),
    ],
)
def test_bad_worker_settings_exit_2_with_one_line(args, message):
    server = ServerProcess("--port", "0", *args)
    assert server.wait(20) == 2
    assert message in server.stderr
    assert server.stderr.count("\n") == 1 and "Traceback" not in server.stderr


def test_workers_auto_runs_one_worker_per_cpu(start_server):
    server = start_server("--workers", "auto")
    cpus = os.cpu_count() or 1
    if cpus > 1:
        assert wait_until(lambda: server.stderr.count("listening on") == cpus)
    server.round_trip(b"ping")


def test_a_port_in_use_fails_at_once_with_exit_3(start_server):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = ServerProcess("--port", str(port), "--workers", "2")
        assert server.wait(20) == 3
    assert f"cannot listen on 127.0.0.1:{port}" in server.stderr
    assert "Traceback" not in server.stderr


def test_restart_backoff_doubles_while_workers_die_young_and_resets_after_health():
    from geventsrv.supervisor import HEALTHY_AFTER, RestartBackoff

    backoff = RestartBackoff()
    young = [backoff.next_delay(lived=1.0) for _ in range(8)]
    assert young == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay(lived=HEALTHY_AFTER) == 0.5
    assert backoff.next_delay(lived=0.1) == 1.0


def test_a_worker_gets_the_servers_config_on_the_reserved_port():
    from geventsrv.config import Config
    from geventsrv.flags import parse_config
    from geventsrv.supervisor import worker_command, worker_config

    config = Config(port=0, workers=4, mode="upper", idle_timeout=7.0)
    worker = worker_config(config, 4321, 3)
    assert worker == config.replace(port=4321, workers=1, reuse_port=True, worker_id=3)
    command = worker_command(config, 4321, 3)
    assert command[1:3] == ["-m", "geventsrv"]
    assert parse_config(command[3:]) == worker


def test_a_killed_supervisors_metrics_directory_is_removed_by_the_next_one(start_server):
    """A supervisor stopped by SIGTERM removes its directory; one SIGKILLed cannot, so the
    next supervisor of the same user removes every directory whose supervisor is gone."""
    from geventsrv.supervisor import metrics_dirs_of

    first = start_server("--workers", "2", "--metrics", "127.0.0.1:0", listeners=2)
    (left,) = metrics_dirs_of(first.pid)
    for victim in [*_workers(first), psutil.Process(first.pid)]:
        victim.kill()
    first.wait(10)
    assert left.exists()  # nothing could remove it
    second = start_server("--workers", "2", "--metrics", "127.0.0.1:0", listeners=2)
    (own,) = metrics_dirs_of(second.pid)
    assert not left.exists() and own.exists()  # the live one's own is kept
    assert second.stop() == 0
    assert not own.exists()
