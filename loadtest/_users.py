"""The abstract echo User and the command-line options every echo user shares.

Helper module (``_`` prefix): loaded only through the locustfiles that import it.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import gevent
from _echo_client import BadHost, EchoClient, parse_host, tls_context, uses_tls
from gevent import ssl
from locust import User, constant, events

log = logging.getLogger("loadtest")

DEFAULT_MESSAGE_SIZE = 1024
DEFAULT_LARGE_MESSAGE_SIZE = 256 * 1024


@events.init_command_line_parser.add_listener
def add_echo_options(parser: Any) -> None:
    group = parser.add_argument_group("echo users")
    group.add_argument(
        "--message-size",
        type=int,
        default=DEFAULT_MESSAGE_SIZE,
        env_var="LOCUST_MESSAGE_SIZE",
        help="bytes per message of the fixed-size users (default: %(default)s)",
    )
    group.add_argument(
        "--large-message-size",
        type=int,
        default=DEFAULT_LARGE_MESSAGE_SIZE,
        env_var="LOCUST_LARGE_MESSAGE_SIZE",
        help="bytes per message of LargePayloadEchoUser (default: %(default)s)",
    )
    group.add_argument(
        "--echo-timeout",
        type=float,
        default=10.0,
        env_var="LOCUST_ECHO_TIMEOUT",
        help="seconds to wait for a connection or a whole reply (default: %(default)s)",
    )
    group.add_argument(
        "--tls-ca",
        default=None,
        env_var="LOCUST_TLS_CA",
        help="with a tls:// host: trust these PEM CA certificates (default: the system's)",
    )
    group.add_argument(
        "--tls-no-verify",
        action="store_true",
        default=False,
        env_var="LOCUST_TLS_NO_VERIFY",
        help="with a tls:// host: do not verify the server's certificate (self-signed servers)",
    )


#: TLS client contexts, one per (verify, CA file): built once, shared by every user.
_contexts: dict[tuple[bool, str | None], Any] = {}


def shared_tls_context(verify: bool, cafile: str | None) -> Any:
    """The client context for these settings (built on first use; see :func:`tls_context`)."""
    key = (verify, cafile)
    if key not in _contexts:
        _contexts[key] = tls_context(verify=verify, cafile=cafile)
    return _contexts[key]


@events.init.add_listener
def refuse_bad_options(environment: Any, **_: Any) -> None:
    """A ``--tls-ca`` that cannot be read, or is not PEM, ends locust at once: exit 2.

    Judged once, before any user starts, instead of a traceback per user.
    """
    options = environment.parsed_options
    cafile = getattr(options, "tls_ca", None) if options is not None else None
    if not cafile:
        return
    try:
        shared_tls_context(not getattr(options, "tls_no_verify", False), cafile)
    except FileNotFoundError:
        log.error("--tls-ca %s: no such file", cafile)
        raise SystemExit(2) from None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = "not a PEM file of CA certificates" if isinstance(exc, ssl.SSLError) else exc
        log.error("--tls-ca %s: %s", cafile, reason)
        raise SystemExit(2) from None


#: What a host must look like, for one user or another of this directory.
HOSTS = (
    "host must be tcp://HOST:PORT, tls://HOST:PORT or HOST:PORT (the echo and chat users), "
    "http://, https://, ws:// or wss://HOST:PORT (the HTTP and WebSocket users), or grpc:// or "
    "grpcs://HOST:PORT (the gRPC user)"
)


def scheme_of(host: str | None) -> str:
    """``tcp`` for ``HOST:PORT``, else what comes before ``://``, lower-cased."""
    text = (host or "").strip()
    return text.split("://", 1)[0].lower() if "://" in text else "tcp"


def takes(user_class: Any, host: str | None) -> bool:
    """Whether ``user_class`` speaks to a host of this scheme (its ``schemes``)."""
    return scheme_of(host) in getattr(user_class, "schemes", ())


@events.init.add_listener
def choose_users_by_host(environment: Any, **_: Any) -> None:
    """Run only the users that speak to the host's scheme, unless users were named.

    ``locust -f loadtest/ -H http://...`` runs the HTTP and WebSocket users,
    ``-H grpc://...`` the gRPC user, ``-H tcp://...`` the echo and chat users: a user
    that cannot talk to the host would only stop at once and leave its share of ``-u``
    idle.
    """
    options = environment.parsed_options
    if environment.host is None or options is None or options.user_classes:
        return  # the web UI asks for a host later; users named on the command line run
    chosen = [cls for cls in environment.user_classes if takes(cls, environment.host)]
    if chosen:
        environment.user_classes = chosen


@events.init.add_listener
def refuse_bad_host(environment: Any, **_: Any) -> None:
    """Headless, a ``-H`` that none of the run's users takes ends locust at once: exit 2."""
    options = environment.parsed_options
    if options is None or not options.headless or environment.host is None:
        return  # the web UI asks for a host later; check_host judges it then
    if not any(takes(cls, environment.host) for cls in environment.user_classes):
        log.error("%s, got %r", HOSTS, environment.host)
        raise SystemExit(2)
    if scheme_of(environment.host) in EchoUser.schemes:
        try:
            parse_host(environment.host)
        except BadHost as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None


@events.test_start.add_listener
def check_host(environment: Any, **_: Any) -> None:
    """A host that none of the run's users takes ends the run (headless: exit code 2)."""
    host = environment.host
    problem = None
    if not any(takes(cls, host) for cls in environment.user_classes):
        problem = f"{HOSTS}, got {host!r}"
    elif scheme_of(host) in EchoUser.schemes:
        try:
            parse_host(host)
        except BadHost as exc:
            problem = str(exc)
    if problem is None:
        return
    log.error("%s", problem)
    environment.process_exit_code = 2
    runner = environment.runner
    if runner is not None:
        # Not from inside test_start: the runner is still starting.
        options = environment.parsed_options
        gevent.spawn(runner.quit if options is None or options.headless else runner.stop)


class EchoUser(User):
    """A user with one :class:`EchoClient`; subclasses say what to send.

    The host is taken the usual locust way (``-H tcp://HOST:PORT``, or
    ``tls://HOST:PORT`` with ``--tls-ca FILE`` or ``--tls-no-verify``). Payloads
    are fresh random bytes for every exchange, so a server that echoed stale
    or shared data would be caught.
    """

    abstract = True
    #: The hosts it speaks to (``HOST:PORT`` counts as ``tcp``).
    schemes = ("tcp", "tls")
    wait_time = constant(0)  # closed loop: the next exchange starts when a reply is in
    #: Command-line option giving the message size, and its default.
    size_option = "message_size"
    default_size = DEFAULT_MESSAGE_SIZE
    #: Stats name of the exchanges; ``{size}`` is filled in.
    label = "echo {size} B"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        #: The server's address; ``None`` when the host is bad and this user stopped.
        self.address: tuple[str, int] | None = None
        try:
            self.address = parse_host(self.host)
        except BadHost:  # (also any host of another user's scheme)
            # check_host has said why. stop(), not StopUser: locust logs a
            # traceback for any exception raised from on_start.
            self.stop()
            return
        tls = None
        if uses_tls(self.host):
            tls = shared_tls_context(
                not getattr(options, "tls_no_verify", False), getattr(options, "tls_ca", None)
            )
        self.client = EchoClient(
            self.address,
            self.environment.events,
            timeout=getattr(options, "echo_timeout", 10.0),
            tls=tls,
        )
        self.random = random.Random()
        self.size = self.option(self.size_option, self.default_size)
        self.name = self.label.format(size=self.size)

    def on_stop(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    def option(self, name: str, default: int) -> int:
        options = self.environment.parsed_options
        value = getattr(options, name, None) if options is not None else None
        return int(value) if value else default
