"""The one typed description of a server: every tunable, its default and its limits.

The command line and the Python API build the same :class:`Config`, so a value
means the same thing whichever way it arrives. :meth:`Config.validate` is the
single place where a value is judged; it raises :class:`ConfigError` with a
message fit to show a user as it is.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from geventsrv import modes
from geventsrv.limits import parse_rate
from geventsrv.proxyproto import ACCEPTED_VERSIONS

#: The port used when none is given: unprivileged, and easy to remember as
#: "echo (7) on 7007".
DEFAULT_PORT = 7007
DEFAULT_HOST = "127.0.0.1"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

#: What serves a connection's socket calls (see :attr:`Config.io`).
IO_PATHS = ("fast", "patched")

MAX_PORT = 65535

#: The default per-client connection limit is never below this.
PER_CLIENT_FLOOR = 100

#: Who may send a PROXY header unless ``--proxy-allow-from`` says otherwise.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


class ConfigError(ValueError):
    """A configuration value is out of range; ``str()`` is a message for the user."""


@dataclass(frozen=True)
class Config:
    """Everything a server needs to know before it starts.

    ``idle_timeout`` of ``None`` (or 0 on the command line) disables the idle
    timeout. ``max_conns`` is the number of connections served at once; more
    clients wait in the kernel's listen backlog (``backlog`` entries deep)
    until a slot frees.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    mode: str = "echo"
    #: Length of the kernel accept queue. The kernel caps it at
    #: ``net.core.somaxconn``. A deep queue absorbs connection storms; when it
    #: overflows the kernel drops handshakes and those clients retry after 1,
    #: then 3 s. Measured with 10,000 connects back to back: Python's default
    #: listen() backlog (128) left 1% of clients waiting 1-1.9 s for a first
    #: echo, 2048 did once in three runs (2.1 s), 4096 never (<= 0.5 s).
    backlog: int = 4096
    max_conns: int = 10000
    #: Seconds without progress (nothing received, or a reply that cannot be
    #: sent) after which a connection is closed.
    idle_timeout: float | None = 300.0
    #: Seconds that open connections get to finish after a stop is requested.
    drain_timeout: float = 10.0
    log_level: str = "info"
    #: Serve TCP on ``host:port``.
    tcp: bool = True
    #: Serve UDP echo on the same ``host:port`` (modes echo and upper).
    udp: bool = False
    #: Processes serving the port together (SO_REUSEPORT) under a supervisor.
    workers: int = 1
    #: Set SO_REUSEPORT on the listener, so that several processes can share
    #: the port and the kernel spreads connections over them.
    reuse_port: bool = False
    #: What sits under the handlers' blocking calls: ``fast``, geventsrv's own
    #: cooperative socket (two system calls per echo), or ``patched``, the
    #: monkey-patched stdlib socket (four): the textbook path, kept to compare.
    io: str = "fast"
    #: Which worker of a supervisor this process is (1..workers), 0 for a
    #: server on its own. Named in every log line.
    worker_id: int = 0
    #: TLS on the TCP port: the certificate chain (PEM) and its key (PEM; may
    #: sit in the certificate's file, then ``tls_key`` may be left out).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: CA certificates (PEM) that client certificates must chain to: mutual TLS.
    tls_ca: str | None = None
    #: Seconds a client gets to complete the TLS handshake, from its accept.
    tls_handshake_timeout: float = 10.0
    #: ALPN protocols the server offers to select, in order of preference.
    tls_alpn: tuple[str, ...] = ()
    #: Require a PROXY protocol header (``v1``, ``v2`` or ``any``) on every
    #: TCP connection; ``None``: no header expected.
    proxy_protocol: str | None = None
    #: Networks a PROXY header is accepted from (CIDR); anyone else is closed.
    proxy_allow_from: tuple[str, ...] = LOOPBACK_NETWORKS
    #: Seconds a client gets to send its whole PROXY header, from its accept.
    proxy_timeout: float = 5.0
    #: Serve ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP on this
    #: ``HOST:PORT`` (port 0 picks one); ``None``: no HTTP endpoint.
    metrics: str | None = None
    #: Where a worker serves its metrics for the supervisor to gather (a Unix
    #: socket path the supervisor chooses); ``None`` on a server alone.
    metrics_socket: str | None = None
    #: Seconds between the first SIGTERM (``/readyz`` turns 503 at once) and
    #: the drain: long enough for a balancer polling readiness to stop
    #: sending new clients before any is refused.
    shutdown_delay: float = 0.0
    #: ``text``: one line per event for people; ``json``: one JSON object per line.
    log_format: str = "text"
    #: Log one line per closed connection (logger ``geventsrv.access``).
    access_log: bool = False
    #: Connections one client may hold at once; ``None``: a tenth of
    #: ``max_conns``, at least 100 (see :attr:`per_client_limit`); 0: no limit.
    max_conns_per_client: int | None = None
    #: IPv6 clients count per network of this prefix length (a host owns its /64).
    ipv6_client_prefix: int = 64
    #: Networks served (with any, only those) and refused (deny wins), TCP and UDP.
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: New connections per second one client may open, ``RATE[:BURST]``; ``None``: no limit.
    accept_rate_per_client: str | None = None
    #: UDP datagrams per second echoed to one source, ``RATE[:BURST]``; ``None``: no limit.
    udp_rate_per_client: str | None = "100:200"

    @property
    def per_client_limit(self) -> int:
        """Connections one client may hold (0: unlimited).

        By default a tenth of ``max_conns`` (1,000 of 10,000): more than one
        ordinary client opens, and nine others of the same appetite still fit.
        Never below 100, so that a small ``max_conns`` on a test bench does not
        turn the second connection of a client away.
        """
        if self.max_conns_per_client is None:
            return max(PER_CLIENT_FLOOR, self.max_conns // 10)
        return self.max_conns_per_client

    def validate(self) -> Config:
        """Return ``self`` if every value is usable, else raise :class:`ConfigError`."""
        if not isinstance(self.port, int) or not 0 <= self.port <= MAX_PORT:
            raise ConfigError(f"port must be an integer from 0 to {MAX_PORT}, got {self.port!r}")
        if self.mode not in modes.MODES:
            choices = ", ".join(modes.MODE_NAMES)
            raise ConfigError(f"mode must be one of {choices}, got {self.mode!r}")
        mode = modes.get(self.mode)
        if self.backlog < 1:
            raise ConfigError(f"backlog must be at least 1, got {self.backlog}")
        if self.max_conns < 1:
            raise ConfigError(f"max-conns must be at least 1, got {self.max_conns}")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ConfigError(
                f"idle-timeout must be a positive number of seconds, got {self.idle_timeout}"
            )
        if not self.drain_timeout >= 0:
            raise ConfigError(f"drain-timeout must be 0 or more seconds, got {self.drain_timeout}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.io not in IO_PATHS:
            raise ConfigError(f"io must be one of {', '.join(IO_PATHS)}, got {self.io!r}")
        if not (self.tcp or self.udp):
            raise ConfigError("nothing to serve: enable TCP, UDP or both")
        if self.udp and not mode.serves_udp:
            served = " and ".join(name for name, m in modes.MODES.items() if m.serves_udp)
            raise ConfigError(f"UDP serves the {served} modes, not {self.mode}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers!r}")
        if self.workers > 1 and not mode.across_workers:
            raise ConfigError(f"{self.mode} mode keeps its state in one process; use --workers 1")
        if not isinstance(self.worker_id, int) or not self.worker_id >= 0:
            raise ConfigError(f"worker-id must be 0 or more, got {self.worker_id!r}")
        if self.workers > 1 and self.udp:
            raise ConfigError("UDP echo runs in one process; use --workers 1 with --udp")
        self._validate_front()
        self._validate_operations()
        self._validate_limits()
        return self

    def _validate_limits(self) -> None:
        """Per-client limits and the access list."""
        per_client = self.max_conns_per_client
        if per_client is not None and per_client < 0:
            raise ConfigError(
                f"max-conns-per-client must be 0 (no limit) or more, got {per_client}"
            )
        if not 0 <= self.ipv6_client_prefix <= 128:
            raise ConfigError(
                f"ipv6-client-prefix must be from 0 to 128, got {self.ipv6_client_prefix}"
            )
        for flag, networks in (("allow", self.allow), ("deny", self.deny)):
            for network in networks:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"{flag} takes networks such as 10.0.0.0/8 or ::1, got {network!r}"
                    ) from None
        for flag, rate in (
            ("accept-rate-per-client", self.accept_rate_per_client),
            ("udp-rate-per-client", self.udp_rate_per_client),
        ):
            if rate is not None:
                try:
                    parse_rate(rate)
                except ValueError as exc:
                    raise ConfigError(f"{flag} {exc}") from None

    def _validate_operations(self) -> None:
        """Metrics, shutdown delay and logs."""
        if self.metrics is not None:
            parse_host_port(self.metrics, "metrics")
        if not self.shutdown_delay >= 0:
            raise ConfigError(
                f"shutdown-delay must be 0 or more seconds, got {self.shutdown_delay}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"log-format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )

    def _validate_front(self) -> None:
        """TLS and the PROXY protocol: what sits in front of the handlers (TCP only)."""
        if self.tls_cert is None and (self.tls_key is not None or self.tls_ca is not None):
            raise ConfigError("tls-key and tls-ca need tls-cert")
        if not self.tls_handshake_timeout > 0:
            raise ConfigError(
                f"tls-handshake-timeout must be a positive number of seconds, "
                f"got {self.tls_handshake_timeout}"
            )
        if self.proxy_protocol is not None and self.proxy_protocol not in ACCEPTED_VERSIONS:
            raise ConfigError(
                f"proxy-protocol must be one of {', '.join(ACCEPTED_VERSIONS)}, "
                f"got {self.proxy_protocol!r}"
            )
        if not self.proxy_timeout > 0:
            raise ConfigError(
                f"proxy-timeout must be a positive number of seconds, got {self.proxy_timeout}"
            )
        for network in self.proxy_allow_from:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    f"proxy-allow-from takes networks such as 10.0.0.0/8 or ::1, got {network!r}"
                ) from None
        if not self.tcp and (self.tls_cert is not None or self.proxy_protocol is not None):
            raise ConfigError("TLS and the PROXY protocol are for TCP; drop --udp-only")

    def replace(self, **changes: object) -> Config:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes).validate()  # type: ignore[arg-type]


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> ``(host, port)``; :class:`ConfigError` naming ``what``."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > MAX_PORT:
        raise ConfigError(f"{what} must be HOST:PORT (port 0 picks one), got {text!r}")
    return host, int(port)
