"""The server's flags: argv in, a validated :class:`Config` out, and back again.

:func:`parse_config` is what ``python -m geventsrv`` parses; a bad flag or
value ends in one line on stderr and exit code 2, never a traceback.
:func:`to_argv` is its inverse: the supervisor hands each worker its
:class:`Config` as the flags that rebuild it exactly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from geventsrv import exitcodes, modes
from geventsrv.addresses import strip_brackets
from geventsrv.cmdline import Parser
from geventsrv.config import (
    DEFAULT_PORT,
    IO_PATHS,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_PORT,
    Config,
    ConfigError,
)
from geventsrv.proxyproto import ACCEPTED_VERSIONS

PROG = "geventsrv"
#: Every flag may also come from the environment: ``--idle-timeout`` from
#: ``GEVENTSRV_IDLE_TIMEOUT``, ``--udp`` from ``GEVENTSRV_UDP=1``. A flag given
#: on the command line wins.
ENV_PREFIX = "GEVENTSRV_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"port must be an integer from 0 to {MAX_PORT}, got {text!r}"
        )
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _words(text: str) -> tuple[str, ...]:
    """``a,b, c`` -> ``("a", "b", "c")``; empty items dropped."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


def _workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1 or 'auto', got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The parser behind ``--help``; defaults come from :class:`Config`."""
    defaults = Config()
    parser = Parser(
        prog=PROG,
        description="An echo server (RFC 862, TCP and UDP) and group chat: plain "
        "blocking-socket code made concurrent by gevent, one greenlet per connection.",
        epilog="SIGINT/SIGTERM stop accepting and drain open connections; a second "
        "signal closes them at once; SIGUSR1 logs a status line. Exit codes: 0 clean "
        "stop, 1 internal error, 2 bad arguments, 3 cannot listen, 4 forced stop.",
    )
    add = parser.add_argument
    add(
        "--host",
        type=strip_brackets,
        default=defaults.host,
        help="address to bind, IPv4 or IPv6, with or without brackets (default: %(default)s)",
    )
    add(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="port; 0 lets the system pick one, logged at start (default: %(default)s)",
    )
    add(
        "--mode",
        choices=modes.MODE_NAMES,
        default=defaults.mode,
        help="; ".join(f"{m.name}: {m.summary}" for m in modes.MODES.values())
        + " (default: %(default)s)",
    )
    add(
        "--backlog",
        type=_positive_int,
        default=defaults.backlog,
        help="listen queue length, capped by net.core.somaxconn (default: %(default)s)",
    )
    add(
        "--max-conns",
        type=_positive_int,
        default=defaults.max_conns,
        help="connections served at once; further clients wait in the listen backlog "
        "until a slot frees (default: %(default)s)",
    )
    add(
        "--idle-timeout",
        type=_seconds,
        default=defaults.idle_timeout,
        help="close a connection after this many seconds without progress; 0 never "
        "(default: %(default)s)",
    )
    add(
        "--drain-timeout",
        type=_seconds,
        default=defaults.drain_timeout,
        help="seconds open connections get to finish after SIGINT/SIGTERM (default: %(default)s)",
    )
    add(
        "--workers",
        type=_workers,
        default=defaults.workers,
        metavar="N",
        help="worker processes sharing the port (SO_REUSEPORT) under a supervisor that "
        "restarts any that die; 'auto' = one per CPU (default: %(default)s)",
    )
    add(
        "--io",
        choices=IO_PATHS,
        default=defaults.io,
        help="fast: geventsrv's own cooperative socket, 2 system calls per echo; patched: "
        "gevent's monkey-patched socket, the textbook path, 4 (default: %(default)s)",
    )
    add(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so that other processes can serve the same port",
    )
    # Set by the supervisor for its workers: names the worker in every log line.
    add("--worker-id", type=int, default=defaults.worker_id, help=argparse.SUPPRESS)
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument(
        "--udp", action="store_true", help="also serve UDP echo on the same host and port"
    )
    transport.add_argument("--udp-only", action="store_true", help="serve UDP echo, no TCP")
    add(
        "--log-level",
        choices=LOG_LEVELS,
        default=defaults.log_level,
        help="debug logs every connection (default: %(default)s)",
    )
    _add_front_flags(parser, defaults)
    _add_operations_flags(parser, defaults)
    _add_limit_flags(parser, defaults)
    return parser


def _rate(text: str) -> str | None:
    """``RATE[:BURST]``, or ``0``/``off`` for no limit."""
    from geventsrv.limits import parse_rate

    if text.strip().lower() in ("0", "off", "none"):
        return None
    try:
        parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _add_limit_flags(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """Who may connect and how much one client may take (see docs/security.md)."""
    limits = parser.add_argument_group("per-client limits and access (see docs/security.md)")
    limits.add_argument(
        "--max-conns-per-client",
        type=_non_negative_int,
        default=defaults.max_conns_per_client,
        metavar="N",
        help="connections one client may hold at once; past it, new ones are closed at "
        "once; 0: no limit (default: a tenth of --max-conns)",
    )
    limits.add_argument(
        "--ipv6-client-prefix",
        type=_non_negative_int,
        default=defaults.ipv6_client_prefix,
        metavar="BITS",
        help="IPv6 clients count per network of this prefix (default: %(default)s)",
    )
    limits.add_argument(
        "--allow",
        type=_words,
        action="extend",
        metavar="CIDR[,CIDR...]",
        help="serve only these networks (repeatable; TCP and UDP)",
    )
    limits.add_argument(
        "--deny",
        type=_words,
        action="extend",
        metavar="CIDR[,CIDR...]",
        help="refuse these networks; deny wins over allow (repeatable; TCP and UDP)",
    )
    limits.add_argument(
        "--accept-rate-per-client",
        type=_rate,
        default=defaults.accept_rate_per_client,
        metavar="RATE[:BURST]",
        help="new connections per second one client may open; past it they are closed at "
        "once (default: no limit)",
    )
    limits.add_argument(
        "--udp-rate-per-client",
        type=_rate,
        default=defaults.udp_rate_per_client,
        metavar="RATE[:BURST]",
        help="UDP datagrams per second echoed to one source; 0: no limit (default: %(default)s)",
    )


def _add_operations_flags(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """Metrics, health, shutdown delay and logs: running it as a service."""
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics, /healthz and /readyz over HTTP here; port 0 "
        "picks one, logged at start (default: off)",
    )
    ops.add_argument(
        "--shutdown-delay",
        type=_seconds,
        default=defaults.shutdown_delay,
        metavar="SECONDS",
        help="on SIGTERM, /readyz turns 503 at once and the server keeps accepting this "
        "long before it drains (default: %(default)s)",
    )
    ops.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=defaults.log_format,
        help="json: one JSON object per line (default: %(default)s)",
    )
    ops.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per closed connection: client, duration, bytes, reason",
    )
    # Set by the supervisor: where a worker serves its metrics for it to gather.
    ops.add_argument("--metrics-socket", help=argparse.SUPPRESS)


def apply_environment(parser: argparse.ArgumentParser, environ: dict[str, str]) -> None:
    """Take defaults from ``GEVENTSRV_<FLAG>`` variables; a bad value names its variable.

    Values are judged by the flag's own type and choices, so a variable means
    exactly what the flag would. On/off flags take 1/true/yes/on or 0/false/no/off.
    """
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        name = ENV_PREFIX + action.dest.upper()
        if name not in environ:
            continue
        text = environ[name].strip()
        value: object
        if action.nargs == 0:  # an on/off flag
            if text.lower() not in _TRUE + _FALSE:
                parser.error(f"{name} takes 1/true/yes/on or 0/false/no/off, got {text!r}")
            value = text.lower() in _TRUE
        else:
            try:
                value = action.type(text) if callable(action.type) else text
            except (argparse.ArgumentTypeError, ValueError) as exc:
                parser.error(f"{name}: {exc}")
            if action.choices is not None and value not in action.choices:
                choices = ", ".join(map(str, action.choices))
                parser.error(f"{name} must be one of {choices}, got {text!r}")
        parser.set_defaults(**{action.dest: value})


def _add_front_flags(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """TLS and the PROXY protocol: for testing what sits in front of a server."""
    tls = parser.add_argument_group("TLS (TCP only; every mode)")
    tls.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this PEM certificate chain")
    tls.add_argument(
        "--tls-key", metavar="FILE", help="its PEM private key (default: in the --tls-cert file)"
    )
    tls.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="require client certificates that chain to these PEM CA certificates (mutual TLS)",
    )
    tls.add_argument(
        "--tls-handshake-timeout",
        type=_positive_seconds,
        default=defaults.tls_handshake_timeout,
        metavar="SECONDS",
        help="close a client that has not completed its handshake by then (default: %(default)s)",
    )
    tls.add_argument(
        "--tls-alpn",
        type=_words,
        default=defaults.tls_alpn,
        metavar="PROTO[,PROTO...]",
        help="ALPN protocols to accept, in order of preference (default: none)",
    )
    proxy = parser.add_argument_group("PROXY protocol (HAProxy's send-proxy, send-proxy-v2)")
    proxy.add_argument(
        "--proxy-protocol",
        choices=tuple(ACCEPTED_VERSIONS),
        help="every connection must start with a PROXY header of this version; its "
        "source address becomes the client's (default: off)",
    )
    proxy.add_argument(
        "--proxy-allow-from",
        type=_words,
        default=defaults.proxy_allow_from,
        metavar="CIDR[,CIDR...]",
        help="who may send a PROXY header; others are closed (default: loopback)",
    )
    proxy.add_argument(
        "--proxy-timeout",
        type=_positive_seconds,
        default=defaults.proxy_timeout,
        metavar="SECONDS",
        help="close a client whose PROXY header is not complete by then (default: %(default)s)",
    )


def parse_config(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Parse ``argv`` (over ``GEVENTSRV_*`` in ``environ``, default ``os.environ``) into a
    validated :class:`Config`; bad input exits with code 2."""
    parser = build_parser()
    apply_environment(parser, dict(os.environ if environ is None else environ))
    return _config(parser.parse_args(argv))


def _config(args: argparse.Namespace) -> Config:
    try:
        return Config(
            host=args.host,
            port=args.port,
            mode=args.mode,
            backlog=args.backlog,
            max_conns=args.max_conns,
            idle_timeout=args.idle_timeout or None,
            drain_timeout=args.drain_timeout,
            log_level=args.log_level,
            tcp=not args.udp_only,
            udp=args.udp or args.udp_only,
            workers=args.workers,
            reuse_port=args.reuse_port,
            worker_id=args.worker_id,
            io=args.io,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            tls_handshake_timeout=args.tls_handshake_timeout,
            tls_alpn=args.tls_alpn,
            proxy_protocol=args.proxy_protocol,
            proxy_allow_from=args.proxy_allow_from,
            proxy_timeout=args.proxy_timeout,
            metrics=args.metrics,
            metrics_socket=args.metrics_socket,
            shutdown_delay=args.shutdown_delay,
            log_format=args.log_format,
            access_log=args.access_log,
            max_conns_per_client=args.max_conns_per_client,
            ipv6_client_prefix=args.ipv6_client_prefix,
            allow=tuple(args.allow or ()),
            deny=tuple(args.deny or ()),
            accept_rate_per_client=args.accept_rate_per_client,
            udp_rate_per_client=args.udp_rate_per_client,
        ).validate()
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(exitcodes.USAGE) from None


def to_argv(config: Config) -> list[str]:
    """Flags that make :func:`parse_config` build ``config`` again, field for field.

    ``tests/test_cli.py`` checks ``parse_config(to_argv(c)) == c`` with every
    field changed, so a new field without a flag here fails there.
    """
    argv = [
        *("--host", config.host),
        *("--port", str(config.port)),
        *("--mode", config.mode),
        *("--backlog", str(config.backlog)),
        *("--max-conns", str(config.max_conns)),
        *("--idle-timeout", repr(config.idle_timeout or 0)),
        *("--drain-timeout", repr(config.drain_timeout)),
        *("--workers", str(config.workers)),
        *("--log-level", config.log_level),
        *("--worker-id", str(config.worker_id)),
        *("--io", config.io),
        *("--tls-handshake-timeout", repr(config.tls_handshake_timeout)),
        *("--tls-alpn", ",".join(config.tls_alpn)),
        *("--proxy-allow-from", ",".join(config.proxy_allow_from)),
        *("--proxy-timeout", repr(config.proxy_timeout)),
        *("--shutdown-delay", repr(config.shutdown_delay)),
        *("--log-format", config.log_format),
        *("--ipv6-client-prefix", str(config.ipv6_client_prefix)),
        *("--accept-rate-per-client", config.accept_rate_per_client or "off"),
        *("--udp-rate-per-client", config.udp_rate_per_client or "off"),
    ]
    if config.max_conns_per_client is not None:
        argv += ["--max-conns-per-client", str(config.max_conns_per_client)]
    for network in config.allow:
        argv += ["--allow", network]
    for network in config.deny:
        argv += ["--deny", network]
    if config.access_log:
        argv.append("--access-log")
    for flag, value in (
        ("--tls-cert", config.tls_cert),
        ("--tls-key", config.tls_key),
        ("--tls-ca", config.tls_ca),
        ("--proxy-protocol", config.proxy_protocol),
        ("--metrics", config.metrics),
        ("--metrics-socket", config.metrics_socket),
    ):
        if value is not None:
            argv += [flag, value]
    if config.reuse_port:
        argv.append("--reuse-port")
    if config.udp:
        argv.append("--udp" if config.tcp else "--udp-only")
    return argv
