"""The one typed description of a server: every setting, declared once.

:class:`Config` holds the server's own settings, declared here, and each mode's,
declared beside the mode's code (:class:`~geventsrv.http.settings.HttpSettings`,
which Config takes in as a base class). Each field is declared with
:func:`~geventsrv.settings.setting`: its default, the help line ``--help``
shows, how its value is written on a command line (its *kind*) and its group
there. :mod:`geventsrv.flags` derives the parser, the ``GEVENTSRV_<FLAG>``
variables and the inverse, :func:`~geventsrv.flags.to_argv`, from these
declarations, so a new setting is one field and nothing else.

The command line and the Python API build the same :class:`Config`, so a value
means the same thing whichever way it arrives. :meth:`Config.validate` is the
single place where a value is judged; it raises :class:`ConfigError` naming the
setting, which the command line shows as ``argument --flag: ...``. A setting
that does nothing without another (``--tls-alpn`` without ``--tls-cert``, a
mode's setting under another mode) is refused, not silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from geventsrv import modes
from geventsrv.http.settings import HttpSettings
from geventsrv.limits import parse_rate
from geventsrv.listeners import asked, listener_configs
from geventsrv.proxyproto import ACCEPTED_VERSIONS
from geventsrv.settings import (
    ConfigError,
    Setting,
    check_choice,
    check_integer,
    check_networks,
    check_seconds,
    flag_of,
    setting,
)

__all__ = ["Config", "ConfigError", "flag_of", "setting_of"]

#: The port used when none is given: unprivileged, and easy to remember as
#: "echo (7) on 7007".
DEFAULT_PORT = 7007
DEFAULT_HOST = "127.0.0.1"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

#: What serves a connection's socket calls (see :attr:`Config.io`).
IO_PATHS = ("fast", "patched")

MAX_PORT = 65535
#: Most connections one process may serve at once: Linux's own ceiling on a
#: process's descriptors (``fs.nr_open``'s default), one per connection.
MAX_CONNS = 1 << 20
#: Most worker processes a supervisor starts.
MAX_WORKERS = 1024
#: Largest listen backlog that ``listen()`` takes (a C int); the kernel caps it
#: further at ``net.core.somaxconn``, and so does :mod:`geventsrv.listen`.
MAX_BACKLOG = (1 << 31) - 1

#: The default per-client connection limit is never below this.
PER_CLIENT_FLOOR = 100

#: Who may send a PROXY header unless ``--proxy-allow-from`` says otherwise.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")

#: Groups of ``--help``, in order (settings without one come first).
GROUPS = {
    "tls": "TLS (TCP only; every mode)",
    "proxy": "PROXY protocol (HAProxy's send-proxy, send-proxy-v2)",
    "operations": "operations",
    "limits": "per-client limits and access (see docs/security.md)",
    "http": "the http mode (see docs/http.md)",
}


def setting_of(name: str) -> Setting:
    """The :class:`~geventsrv.settings.Setting` of the field ``name``."""
    return FIELDS[name].metadata["setting"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Config(HttpSettings):
    """Everything a server needs to know before it starts.

    ``idle_timeout`` of ``None`` (or 0 on the command line) disables the idle
    timeout. ``max_conns`` is the number of connections served at once; more
    clients wait in the kernel's listen backlog (``backlog`` entries deep)
    until a slot frees.
    """

    host: str = setting(
        DEFAULT_HOST, "address to bind, IPv4 or IPv6, with or without brackets", kind="host"
    )
    port: int = setting(
        DEFAULT_PORT, "port; 0 lets the system pick one, logged at start", kind="integer"
    )
    mode: str = setting(
        "echo",
        "; ".join(f"{m.name}: {m.summary}" for m in modes.MODES.values()),
        choices=modes.MODE_NAMES,
    )
    #: More listeners in this process (:mod:`geventsrv.listeners`), sharing its
    #: limits, metrics and drain.
    listen: tuple[str, ...] = setting(
        (),
        "also listen here, with a mode, TLS and PROXY setting of its own (KEY: mode, tls-cert, "
        "tls-key, tls-ca, proxy-protocol; udp adds UDP echo); repeatable",
        kind="listeners",
        metavar="[HOST:]PORT[,KEY=VALUE...]",
        default_text="none",
    )
    #: Length of the kernel accept queue. The kernel caps it at
    #: ``net.core.somaxconn``. A deep queue absorbs connection storms; when it
    #: overflows the kernel drops handshakes and those clients retry after 1,
    #: then 3 s. Measured with 10,000 connects back to back: Python's default
    #: listen() backlog (128) left 1% of clients waiting 1-1.9 s for a first
    #: echo, 2048 did once in three runs (2.1 s), 4096 never (<= 0.5 s).
    backlog: int = setting(
        4096, "listen queue length, capped by net.core.somaxconn", kind="integer", metavar="N"
    )
    max_conns: int = setting(
        10000,
        "connections served at once; further clients wait in the listen backlog until a slot frees",
        kind="integer",
        metavar="N",
    )
    #: Seconds without progress (nothing received, or a reply that cannot be
    #: sent) after which a connection is closed.
    idle_timeout: float | None = setting(
        300.0,
        "close a connection after this many seconds without progress; 0 never",
        kind="seconds_or_never",
        metavar="SECONDS",
    )
    #: Seconds that open connections get to finish after a stop is requested.
    drain_timeout: float = setting(
        10.0,
        "seconds open connections get to finish after SIGINT/SIGTERM",
        kind="seconds",
        metavar="SECONDS",
    )
    #: Processes serving the port together (SO_REUSEPORT) under a supervisor.
    workers: int = setting(
        1,
        "worker processes sharing the port (SO_REUSEPORT) under a supervisor that restarts "
        "any that die; 'auto' = one per CPU",
        kind="workers",
        metavar="N",
    )
    #: What sits under the handlers' blocking calls: ``fast``, geventsrv's own
    #: cooperative socket (two system calls per echo), or ``patched``, the
    #: monkey-patched stdlib socket (three or four): the textbook path, kept to compare.
    io: str = setting(
        "fast",
        "fast: geventsrv's own cooperative socket, 2 system calls per echo; patched: "
        "gevent's monkey-patched socket, the textbook path, 3 or 4",
        choices=IO_PATHS,
    )
    #: Set SO_REUSEPORT on the listener, so that several processes can share
    #: the port and the kernel spreads connections over them.
    reuse_port: bool = setting(
        False, "set SO_REUSEPORT, so that other processes can serve the same port", kind="switch"
    )
    #: Serve UDP echo on the same ``host:port`` (modes echo and upper).
    udp: bool = setting(False, "also serve UDP echo on the same host and port", kind="transport")
    #: Serve TCP on ``host:port`` (off with ``--udp-only``).
    tcp: bool = setting(True, "serve UDP echo, no TCP", kind="transport")
    log_level: str = setting("info", "debug logs every connection", choices=LOG_LEVELS)
    #: Which worker of a supervisor this process is (1..workers), 0 for a
    #: server on its own. Named in every log line.
    worker_id: int = setting(0, "", kind="integer", hidden=True)
    #: TLS on the TCP port: the certificate chain (PEM) and its key (PEM; may
    #: sit in the certificate's file, then ``tls_key`` may be left out).
    tls_cert: str | None = setting(
        None, "serve TLS with this PEM certificate chain", group="tls", metavar="FILE"
    )
    tls_key: str | None = setting(
        None,
        "its PEM private key",
        group="tls",
        metavar="FILE",
        default_text="in the --tls-cert file",
    )
    #: CA certificates (PEM) that client certificates must chain to: mutual TLS.
    tls_ca: str | None = setting(
        None,
        "require client certificates that chain to these PEM CA certificates (mutual TLS)",
        group="tls",
        metavar="FILE",
    )
    #: Seconds a client gets to complete the TLS handshake, from its accept.
    tls_handshake_timeout: float = setting(
        10.0,
        "close a client that has not completed its handshake by then",
        kind="seconds",
        group="tls",
        metavar="SECONDS",
    )
    #: ALPN protocols the server offers to select, in order of preference.
    tls_alpn: tuple[str, ...] = setting(
        (),
        "ALPN protocols to accept, in order of preference",
        kind="words",
        group="tls",
        metavar="PROTO[,PROTO...]",
        default_text="none",
    )
    #: Require a PROXY protocol header (``v1``, ``v2`` or ``any``) on every
    #: TCP connection; ``None``: no header expected.
    proxy_protocol: str | None = setting(
        None,
        "every connection must start with a PROXY header of this version; its source "
        "address becomes the client's",
        group="proxy",
        choices=tuple(ACCEPTED_VERSIONS),
        default_text="off",
    )
    #: Networks a PROXY header is accepted from (CIDR); anyone else is closed.
    proxy_allow_from: tuple[str, ...] = setting(
        LOOPBACK_NETWORKS,
        "who may send a PROXY header; others are closed",
        kind="words",
        group="proxy",
        metavar="CIDR[,CIDR...]",
        default_text="loopback",
    )
    #: Seconds a client gets to send its whole PROXY header, from its accept.
    proxy_timeout: float = setting(
        5.0,
        "close a client whose PROXY header is not complete by then",
        kind="positive_seconds",
        group="proxy",
        metavar="SECONDS",
    )
    #: Serve ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP on this
    #: ``HOST:PORT`` (port 0 picks one); ``None``: no HTTP endpoint.
    metrics: str | None = setting(
        None,
        "serve Prometheus /metrics, /healthz and /readyz over HTTP here; port 0 picks one, "
        "logged at start",
        group="operations",
        metavar="HOST:PORT",
        default_text="off",
    )
    #: Where a worker serves its metrics for the supervisor to gather (a Unix
    #: socket path the supervisor chooses); ``None`` on a server alone.
    metrics_socket: str | None = setting(None, "", group="operations", hidden=True)
    #: Seconds between the first SIGTERM (``/readyz`` turns 503 at once) and
    #: the drain: long enough for a balancer polling readiness to stop
    #: sending new clients before any is refused.
    shutdown_delay: float = setting(
        0.0,
        "on SIGTERM, /readyz turns 503 at once and the server keeps accepting this long "
        "before it drains",
        kind="seconds",
        group="operations",
        metavar="SECONDS",
    )
    #: ``text``: one line per event for people; ``json``: one JSON object per line.
    log_format: str = setting(
        "text", "json: one JSON object per line", group="operations", choices=LOG_FORMATS
    )
    #: Log one line per closed connection (logger ``geventsrv.access``).
    access_log: bool = setting(
        False,
        "log one line per closed connection: client, duration, bytes, reason",
        kind="switch",
        group="operations",
    )
    #: Connections one client may hold at once; ``None``: a tenth of
    #: ``max_conns``, at least 100, for every client but loopback ones (see
    #: :attr:`per_client_limit`); 0: no limit.
    max_conns_per_client: int | None = setting(
        None,
        "connections one client may hold at once; past it, new ones are closed at once; "
        "0: no limit",
        kind="integer",
        group="limits",
        metavar="N",
        default_text="a tenth of --max-conns, at least 100, for every client but loopback "
        "ones, which only this flag limits",
    )
    #: IPv6 clients count per network of this prefix length (a host owns its /64).
    ipv6_client_prefix: int = setting(
        64,
        "IPv6 clients count per network of this prefix",
        kind="integer",
        group="limits",
        metavar="BITS",
    )
    #: Networks served (with any, only those) and refused (deny wins), TCP and UDP.
    allow: tuple[str, ...] = setting(
        (),
        "serve only these networks (repeatable; TCP and UDP)",
        kind="networks",
        group="limits",
        metavar="CIDR[,CIDR...]",
    )
    deny: tuple[str, ...] = setting(
        (),
        "refuse these networks; deny wins over allow (repeatable; TCP and UDP)",
        kind="networks",
        group="limits",
        metavar="CIDR[,CIDR...]",
    )
    #: New connections per second one client may open, ``RATE[:BURST]``; ``None``: no limit.
    accept_rate_per_client: str | None = setting(
        None,
        "new connections per second one client may open; past it they are closed at once",
        kind="rate",
        group="limits",
        metavar="RATE[:BURST]",
        default_text="no limit",
    )
    #: UDP datagrams per second echoed to one source, ``RATE[:BURST]``; ``None``: no limit.
    udp_rate_per_client: str | None = setting(
        "100:200",
        "UDP datagrams per second echoed to one source; 0: no limit",
        kind="rate",
        group="limits",
        metavar="RATE[:BURST]",
    )

    @property
    def per_client_limit(self) -> int:
        """Connections one client may hold (0: unlimited).

        By default a tenth of ``max_conns`` (1,000 of 10,000): more than one
        ordinary client opens, and nine others of the same appetite still fit.
        Never below 100, so that a small ``max_conns`` on a test bench does not
        turn the second connection of a client away. The default spares
        loopback clients (:attr:`per_client_limit_spares_loopback`).
        """
        if self.max_conns_per_client is None:
            return max(PER_CLIENT_FLOOR, self.max_conns // 10)
        return self.max_conns_per_client

    @property
    def per_client_limit_spares_loopback(self) -> bool:
        """Whether loopback clients go uncounted: yes unless the limit was given.

        On loopback every client is 127.0.0.1 (or ::1): a load test from the same
        machine would meet the default limit as a global cap of a tenth. A
        server exposed to a network still limits every remote address; a limit
        given explicitly applies to loopback too.
        """
        return self.max_conns_per_client is None

    def validate(self) -> Config:
        """Return ``self`` if every value is usable, else raise :class:`ConfigError`."""
        check_integer(self, "port", 0, MAX_PORT)
        if self.mode not in modes.MODES:
            raise ConfigError(
                "mode", f"must be one of {', '.join(modes.MODE_NAMES)}, got {self.mode!r}"
            )
        mode = modes.get(self.mode)
        check_integer(self, "backlog", 1, MAX_BACKLOG)
        check_integer(self, "max_conns", 1, MAX_CONNS)
        if self.idle_timeout is not None:
            check_seconds(self, "idle_timeout", positive=True)
        check_seconds(self, "drain_timeout")
        check_choice(self, "log_level", LOG_LEVELS)
        check_choice(self, "io", IO_PATHS)
        if not (self.tcp or self.udp):
            raise ConfigError(None, "nothing to serve: enable TCP, UDP or both")
        if self.udp and not mode.serves_udp:
            served = " and ".join(name for name, m in modes.MODES.items() if m.serves_udp)
            raise ConfigError("udp", f"serves the {served} modes, not {self.mode}")
        check_integer(self, "workers", 1, MAX_WORKERS)
        if self.workers > 1 and not mode.across_workers:
            raise ConfigError(
                "workers", f"{self.mode} mode keeps its state in one process; use --workers 1"
            )
        check_integer(self, "worker_id", 0, MAX_WORKERS)
        if self.workers > 1 and self.udp:
            raise ConfigError("workers", "UDP echo runs in one process; use --workers 1 with --udp")
        self._validate_front()
        self._validate_operations()
        self._validate_limits()
        self._validate_mode_settings()
        listener_configs(self)
        return self

    def _validate_mode_settings(self) -> None:
        """The settings of each mode served (here or by a ``--listen``), judged by it;
        another mode's, left at their defaults."""
        served = {self.mode, *asked(self, "mode")}
        in_use = {modes.MODES[name].settings for name in served if name in modes.MODES}
        for other in modes.MODES.values():
            if other.settings is None or other.settings in in_use:
                continue
            for declared in dataclasses.fields(other.settings):
                if getattr(self, declared.name) != declared.default:
                    raise ConfigError(declared.name, f"applies to --mode {other.name} only")
        for settings in in_use:
            if settings is not None:
                settings.check(self)

    def _validate_limits(self) -> None:
        """Per-client limits and the access list."""
        if self.max_conns_per_client is not None:
            check_integer(self, "max_conns_per_client", 0, MAX_CONNS, "0 (no limit)")
        check_integer(self, "ipv6_client_prefix", 0, 128)
        for name in ("allow", "deny"):
            check_networks(self, name)
        for name in ("accept_rate_per_client", "udp_rate_per_client"):
            rate = getattr(self, name)
            if rate is not None:
                try:
                    parse_rate(rate)
                except ValueError as exc:
                    raise ConfigError(name, str(exc)) from None

    def _validate_operations(self) -> None:
        """Metrics, shutdown delay and logs."""
        if self.metrics is not None:
            parse_host_port(self.metrics, "metrics")
        check_seconds(self, "shutdown_delay")
        check_choice(self, "log_format", LOG_FORMATS)

    def _validate_front(self) -> None:
        """TLS and the PROXY protocol: what sits in front of the handlers (TCP only)."""
        # A listener's TLS or PROXY header uses the server's timeouts and sources.
        if self.tls_cert is None:
            self._refuse_unless_default(("tls_key", "tls_ca", "tls_alpn"), "--tls-cert")
            if not asked(self, "tls_cert"):
                self._refuse_unless_default(("tls_handshake_timeout",), "--tls-cert")
        check_seconds(self, "tls_handshake_timeout", positive=True)
        if self.proxy_protocol is not None:
            check_choice(self, "proxy_protocol", tuple(ACCEPTED_VERSIONS))
        elif not asked(self, "proxy_protocol"):
            self._refuse_unless_default(("proxy_allow_from", "proxy_timeout"), "--proxy-protocol")
        check_seconds(self, "proxy_timeout", positive=True)
        check_networks(self, "proxy_allow_from")
        if not self.tcp and (self.tls_cert is not None or self.proxy_protocol is not None):
            raise ConfigError(
                "tls_cert" if self.tls_cert else "proxy_protocol",
                "TLS and the PROXY protocol are for TCP; drop --udp-only",
            )

    def _refuse_unless_default(self, names: tuple[str, ...], needed: str) -> None:
        """Settings that do nothing without ``needed``: each must be left at its default."""
        for name in names:
            if getattr(self, name) != FIELDS[name].default:
                raise ConfigError(name, f"needs {needed}")

    def replace(self, **changes: object) -> Config:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes).validate()  # type: ignore[arg-type]


#: Every field of :class:`Config` by name, with its :class:`~geventsrv.settings.Setting`
#: in ``metadata``.
FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def parse_host_port(text: str, name: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> ``(host, port)``; :class:`ConfigError` for ``name``."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > MAX_PORT:
        raise ConfigError(name, f"must be HOST:PORT (port 0 picks one), got {text!r}")
    return host, int(port)
