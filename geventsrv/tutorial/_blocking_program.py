"""The program lesson 4 runs in a fresh process, unpatched, patched, and patched too late.

``python -m geventsrv.tutorial._blocking_program MODE PORT PAUSE`` where MODE is
``unpatched``, ``patched`` or ``patched-late``. Three greenlets each call
``sleep(PAUSE)``, then three each ask a server on PORT that answers after PAUSE
seconds. Prints one JSON line: the wall time of each round.
"""

import sys

MODE, PORT, PAUSE = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

if MODE == "patched":
    from gevent import monkey

    monkey.patch_all()  # first, before anything below is imported

import json
from collections.abc import Callable
import socket
import time
from time import sleep  # binds the name to whatever time.sleep is *now*

if MODE == "patched-late":
    from gevent import monkey

    monkey.patch_all()  # too late for the `sleep` name above

import gevent
from gevent import monkey


def nap() -> None:
    sleep(PAUSE)


def ask_slow_server() -> bytes:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
        sock.sendall(b"?")
        return sock.recv(16)


def three_at_once(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    gevent.joinall([gevent.spawn(work) for _ in range(3)], raise_error=True)
    return time.perf_counter() - start


print(
    json.dumps(
        {
            "mode": MODE,
            "sleep": three_at_once(nap),
            "socket": three_at_once(ask_slow_server),
            "patched": sorted(getattr(monkey, "saved", {})),
        }
    )
)
