"""A timed, verifying TCP echo client that reports every exchange to locust.

Helper module: its name starts with ``_`` so ``locust -f loadtest/`` does not
load it as a locustfile.

Each :meth:`EchoClient.exchange` sends one payload, reads back exactly as many
bytes, compares them, and fires locust's ``request`` event with the time taken
(``time.perf_counter``, in milliseconds). Every way an exchange can go wrong (a
reply that differs by one byte, a short read, a reset, a timeout, a refused
connection) is recorded as a failure with a message that says which; nothing is
raised into the user. After a failure the connection is dropped, and the next
exchange opens a new one; while connecting keeps failing (no server, a full
backlog), each attempt waits longer first, from 50 ms doubling to 2 s, so a
user against a closed port records a few failures a second, not thousands.

Hosts are ``tcp://HOST:PORT`` or, for a server behind TLS (geventsrv's
``--tls-cert``, or a TLS terminator in front of it), ``tls://HOST:PORT``: the
handshake is then part of the timed ``CONNECT``.
"""

from __future__ import annotations

import time
from typing import Any

from gevent import sleep, socket, ssl

#: First pause before a reconnect after a failed connect; doubled while it
#: keeps failing, up to RETRY_MAX; a connect that succeeds ends it.
RETRY_MIN = 0.05
RETRY_MAX = 2.0


class EchoMismatch(Exception):
    """The reply was not byte-for-byte what was sent."""


class ShortRead(Exception):
    """The server closed the connection before the whole reply arrived."""


class BadHost(ValueError):
    """The ``--host`` value is not ``[tcp://|tls://]HOST:PORT``."""


SCHEMES = ("tcp", "tls")


def parse_host(host: str | None) -> tuple[str, int]:
    """``tcp://127.0.0.1:7007``, ``tls://[::1]:7443``, ``127.0.0.1:7007`` -> ``(host, port)``."""
    text = (host or "").strip()
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme not in SCHEMES:
            raise BadHost(
                f"host must be tcp://HOST:PORT, tls://HOST:PORT or HOST:PORT, got {host!r}"
            )
    text = text.rstrip("/")
    name, sep, port = text.rpartition(":")
    name = name.strip("[]")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadHost(f"host must be tcp://HOST:PORT, tls://HOST:PORT or HOST:PORT, got {host!r}")
    return name, int(port)


def uses_tls(host: str | None) -> bool:
    """Whether ``host`` asks for TLS (``tls://``)."""
    return (host or "").strip().startswith("tls://")


def tls_context(verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """A client context: the system's CAs (or ``cafile``), or no verification at all.

    ``verify=False`` is for servers with self-signed certificates: the bytes
    are still encrypted and still checked, but anyone could be answering.
    """
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def first_difference(sent: bytes, received: bytes | bytearray | memoryview) -> int:
    """Index of the first byte where the two differ (they are known to differ)."""
    for index, (a, b) in enumerate(zip(sent, received, strict=False)):
        if a != b:
            return index
    return min(len(sent), len(received))


class EchoClient:
    """One connection to an echo server; reconnects on demand after a failure.

    ``events`` is the locust environment's ``events``. ``request_type`` and
    the ``name`` passed to :meth:`exchange` label the rows of locust's stats.
    """

    def __init__(
        self,
        address: tuple[str, int],
        events: Any,
        timeout: float = 10.0,
        request_type: str = "ECHO",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        #: With a context, every connection is TLS (see :func:`tls_context`).
        self.tls = tls
        self.events = events
        self.timeout = timeout
        self.request_type = request_type
        self.sock: socket.socket | None = None
        #: Seconds to wait before the next connect: 0 until one fails.
        self.retry_delay = 0.0
        self._buffer = bytearray()
        self._resolved: tuple[int, Any] | None = None

    def _resolve(self) -> tuple[int, Any]:
        # Once per client: a name lookup per connection would be timed as part
        # of every connect, and gevent's resolver runs it in a thread pool.
        if self._resolved is None:
            family, _, _, _, sockaddr = socket.getaddrinfo(*self.address, type=socket.SOCK_STREAM)[
                0
            ]
            self._resolved = (family, sockaddr)
        return self._resolved

    def connect(self) -> bool:
        """Open the connection (timed, reported as ``CONNECT``); ``False`` if it failed.

        After a failure the next call first waits :attr:`retry_delay` (untimed).
        """
        if self.retry_delay:
            sleep(self.retry_delay)
        start = time.perf_counter()
        sock = None
        try:
            family, sockaddr = self._resolve()
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(sockaddr)
            # An echo request is one small write: send it now, not after an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
        except OSError as exc:
            if sock is not None:
                sock.close()
            self._report("CONNECT", "connect", start, 0, exc)
            self.retry_delay = min(max(self.retry_delay * 2, RETRY_MIN), RETRY_MAX)
            return False
        self.retry_delay = 0.0
        self.sock = sock
        self._report("CONNECT", "connect", start, 0, None)
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, payload: bytes, name: str) -> bool:
        """Send ``payload``, read it back, verify, report. ``True`` if the echo was exact."""
        if self.sock is None and not self.connect():
            return False
        sock = self.sock
        assert sock is not None
        size = len(payload)
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        view = memoryview(self._buffer)[:size]
        start = time.perf_counter()
        error: Exception | None = None
        try:
            sock.sendall(payload)
            received = 0
            while received < size:
                count = sock.recv_into(view[received:])
                if not count:
                    raise ShortRead(f"connection closed after {received} of {size} reply bytes")
                received += count
            if view != payload:
                at = first_difference(payload, view)
                raise EchoMismatch(
                    f"reply differs from request at byte {at} of {size} "
                    f"(sent 0x{payload[at]:02x}, got 0x{view[at]:02x})"
                )
        except TimeoutError:
            error = TimeoutError(f"no complete reply within {self.timeout:g} s")
        except (OSError, ShortRead, EchoMismatch) as exc:
            error = exc
        finally:
            view.release()
        self._report(self.request_type, name, start, size, error)
        if error is not None:
            self.close()
            return False
        return True

    def _report(
        self, kind: str, name: str, start: float, length: int, error: Exception | None
    ) -> None:
        self.events.request.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=error,
            context={},
        )
