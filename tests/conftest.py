"""Fixtures: start real geventsrv processes and make sure none outlives its test."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess

# A run started in the background by a shell without job control (nohup, `cmd &` in a
# script) has SIGINT ignored, and every child inherits that: Python then installs no
# KeyboardInterrupt, and the tests of what Ctrl-C does would test nothing real. A handled
# SIGINT here is reset to the default in every child at exec, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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

    def start(*args: str, **kwargs: Any) -> ServerProcess:
        server = ServerProcess("--port", "0", *args, **kwargs)
        servers.append(server)
        return server.wait_listening()

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        assert "Traceback" not in server.stderr, server.stderr


@pytest.fixture
def http_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A server in http mode, with small bounds the tests reach quickly."""
    return start_server("--mode", "http", "--http-max-body", "100000", "--http-max-delay", "2")


@pytest.fixture(autouse=True)
def test_process_stays_unpatched() -> Iterator[None]:
    """Tests run the patched server in subprocesses; the test process itself must stay plain.

    (Importing locust, for one, would monkey-patch it and turn every test's
    threads into greenlets.)
    """
    yield
    from gevent import monkey

    assert not monkey.is_module_patched("socket"), "the test process was monkey-patched"


class Certs:
    """Certificates made for the test session by trustme (no key is ever committed).

    ``server`` holds key and chain in one file; ``server_cert``/``server_key``
    the same apart. Client certificates: ``client`` (from ``ca``),
    ``client_expired`` (from ``ca``, expired yesterday), ``client_unknown_ca``
    (from a CA the server does not trust).
    """

    def __init__(self, directory: Path) -> None:
        import datetime

        import trustme

        self.ca_authority = trustme.CA()
        other = trustme.CA()
        self.dir = directory
        leaf = self.ca_authority.issue_cert("localhost", "127.0.0.1", "::1")
        self.ca = self._write("ca.pem", self.ca_authority.cert_pem.bytes())
        self.server = self._write("server.pem", leaf.private_key_and_cert_chain_pem.bytes())
        self.server_cert = self._write(
            "server.crt", b"".join(p.bytes() for p in leaf.cert_chain_pems)
        )
        self.server_key = self._write("server.key", leaf.private_key_pem.bytes())
        unrelated = self.ca_authority.issue_cert("elsewhere.test")
        self.unrelated_key = self._write("unrelated.key", unrelated.private_key_pem.bytes())
        yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        self.client = self._client("client.pem", self.ca_authority, "tester")
        self.client_expired = self._client(
            "expired.pem", self.ca_authority, "expired", not_after=yesterday
        )
        self.client_unknown_ca = self._client("stranger.pem", other, "stranger")

    def _write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def _client(self, name: str, authority: Any, common_name: str, **dates: Any) -> str:
        leaf = authority.issue_cert(f"{common_name}@example.test", common_name=common_name, **dates)
        return self._write(name, leaf.private_key_and_cert_chain_pem.bytes())

    def client_context(self, cert: str | None = None, alpn: list[str] | None = None) -> Any:
        """A client context trusting ``ca``; presenting ``cert`` if given."""
        import ssl

        context = ssl.create_default_context(cafile=self.ca)
        if cert is not None:
            context.load_cert_chain(cert)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))
