"""Fixtures: start real geventsrv processes and make sure none outlives its test."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from support import ServerProcess


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source seeded from the test's name, so a failure replays the same bytes."""
    return random.Random(request.node.nodeid)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(*flags)`` runs ``python -m geventsrv --port 0 *flags`` until it listens.

    At teardown every server still running is stopped, and each one's stderr
    must be free of tracebacks: a misbehaving client may cost a connection,
    never a traceback.
    """
    servers: list[ServerProcess] = []

    def start(*args: str, **kwargs: object) -> ServerProcess:
        server = ServerProcess("--port", "0", *args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.wait_listening()

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        assert "Traceback" not in server.stderr, server.stderr


@pytest.fixture(autouse=True)
def test_process_stays_unpatched() -> Iterator[None]:
    """Tests run the patched server in subprocesses; the test process itself must stay plain.

    (Importing locust, for one, would monkey-patch it and turn every test's
    threads into greenlets.)
    """
    yield
    from gevent import monkey

    assert not monkey.is_module_patched("socket"), "the test process was monkey-patched"
