"""Command line of ``python -m geventsrv``: flags in, a :class:`Config` out, an exit code back.

Argument parsing only; the work is :func:`geventsrv.server.serve`. Every
problem a user can cause ends in one line on stderr and a documented exit code,
never a traceback.

Exit codes
    ``0`` clean shutdown; ``1`` unexpected internal error; ``2`` bad flags or
    values; ``3`` cannot listen (address in use, not available, no permission,
    unknown host); ``4`` a second signal forced the shutdown before open
    connections had drained.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from geventsrv.config import DEFAULT_PORT, LOG_LEVELS, MAX_PORT, MODES, Config, ConfigError

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1
EXIT_USAGE = 2
EXIT_CANNOT_LISTEN = 3
EXIT_FORCED = 4

PROG = "geventsrv"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line rather than the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text!r}")
    return value


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
    parser = _Parser(
        prog=PROG,
        description="An echo server (RFC 862, TCP and UDP) and group chat: plain "
        "blocking-socket code made concurrent by gevent, one greenlet per connection.",
        epilog="SIGINT/SIGTERM stop accepting and drain open connections; a second "
        "signal closes them at once. Exit codes: 0 clean stop, 2 bad arguments, "
        "3 cannot listen, 4 forced stop.",
    )
    add = parser.add_argument
    add(
        "--host", default=defaults.host, help="address to bind, IPv4 or IPv6 (default: %(default)s)"
    )
    add(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="port; 0 lets the system pick one, logged at start (default: %(default)s)",
    )
    add(
        "--mode",
        choices=MODES,
        default=defaults.mode,
        help="echo: bytes back unchanged (RFC 862); upper: ASCII letters upper-cased; "
        "chat: each line to every other client (default: %(default)s)",
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
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so that other processes can serve the same port",
    )
    # Set by the supervisor for its workers: names the worker in every log line.
    add("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
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
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[Config, argparse.Namespace]:
    """Parse ``argv`` into a validated :class:`Config` (and the raw arguments)."""
    args = build_parser().parse_args(argv)
    return _config(args), args


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse ``argv`` into a validated :class:`Config`; bad input exits with code 2."""
    return parse_args(argv)[0]


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
        ).validate()
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def configure_logging(level: str, worker_id: int = 0) -> None:
    """Log to stderr, one line per event, with a timestamp (and the worker, if one)."""
    worker = f"worker {worker_id} " if worker_id else ""
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {worker}%(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server as the command line asks; returns the process exit code.

    The process must already be monkey-patched (``python -m geventsrv`` does it).
    """
    config, args = parse_args(argv)
    configure_logging(config.log_level, args.worker_id)
    from geventsrv.server import ListenError, NotPatchedError, serve

    try:
        if config.workers > 1:
            from geventsrv.supervisor import supervise

            return supervise(config)
        clean = serve(config)
    except ListenError as exc:
        print(f"{PROG}: error: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    except NotPatchedError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    except KeyboardInterrupt:  # interrupted before the signal handlers were in place
        return EXIT_FORCED
    return EXIT_OK if clean else EXIT_FORCED
