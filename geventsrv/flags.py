"""The server's flags, derived from :class:`~geventsrv.config.Config`'s declarations.

:func:`build_parser` makes one flag per field (its help, group and kind come
from the field's :class:`~geventsrv.config.Setting`), :func:`apply_environment`
one ``GEVENTSRV_<FLAG>`` variable per flag, and :func:`to_argv` the inverse of
:func:`parse_config`: the supervisor hands each worker its :class:`Config` as
the flags that rebuild it exactly.

Flags only convert text to values (a number, a list); whether a value is
usable is :meth:`Config.validate`'s to judge, and its :class:`ConfigError`
is shown as argparse shows its own errors: ``geventsrv: error: argument
--port: must be ... (see --help)``, exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from geventsrv.addresses import strip_brackets
from geventsrv.cmdline import Parser
from geventsrv.config import FIELDS, GROUPS, Config, ConfigError, flag_of, setting_of

PROG = "geventsrv"
#: Every flag may also come from the environment: ``--idle-timeout`` from
#: ``GEVENTSRV_IDLE_TIMEOUT``, ``--udp`` from ``GEVENTSRV_UDP=1``. A flag given
#: on the command line wins.
ENV_PREFIX = "GEVENTSRV_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
#: The flag that turns TCP off (the ``tcp`` field's flag is named for what it does).
UDP_ONLY = "--udp-only"


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None


def _words(text: str) -> tuple[str, ...]:
    """``a,b, c`` -> ``("a", "b", "c")``; empty items dropped."""
    return tuple(word.strip() for word in text.split(",") if word.strip())


def _workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1 or 'auto', got {text!r}"
        ) from None


def _rate(text: str) -> str | None:
    """``RATE[:BURST]``, or ``0``/``off``/``none`` for no limit (judged by Config)."""
    return None if text.strip().lower() in ("0", "off", "none") else text.strip()


def _plain(value: Any) -> list[str]:
    return [] if value is None else [str(value)]


@dataclass(frozen=True)
class Kind:
    """How a kind of value is read from a flag (``parse``) and written back (``write``)."""

    parse: Callable[[str], Any] | None
    #: The value as the flag's arguments: ``[]`` leaves the flag out.
    write: Callable[[Any], list[str]] = _plain


#: Every kind a :class:`~geventsrv.config.Setting` may name.
KINDS = {
    "text": Kind(None),
    "host": Kind(strip_brackets),
    "integer": Kind(_whole_number),
    "workers": Kind(_workers),
    "seconds": Kind(_number, lambda v: [repr(v)]),
    "positive_seconds": Kind(_number, lambda v: [repr(v)]),
    # 0 on the command line means "never": None in the Config.
    "seconds_or_never": Kind(_number, lambda v: [repr(v or 0)]),
    "words": Kind(_words, lambda v: [",".join(v)]),
    # Repeatable; written back as one comma-separated flag.
    "networks": Kind(_words, lambda v: [",".join(v)] if v else []),
    # Repeatable; several in one variable are separated by spaces.
    "listeners": Kind(str.split, lambda v: [" ".join(v)] if v else []),
    "rate": Kind(_rate, lambda v: [v or "off"]),
    "switch": Kind(None),
    "transport": Kind(None),
}


#: Kinds whose flag may be given again, each time adding to the value.
REPEATABLE = ("networks", "listeners")


class Repeated(argparse.Action):
    """A repeatable flag: each use adds to the value; the first replaces the default,
    which the environment may have set (a flag overrides its variable, as every other does)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:
            current = ()
        setattr(namespace, self.dest, (*current, *values))


def build_parser() -> argparse.ArgumentParser:
    """The parser behind ``--help``: one flag per :class:`Config` field, defaults from it."""
    parser = Parser(
        prog=PROG,
        description="An echo server (RFC 862, TCP and UDP), an info mode, group chat, and an "
        "HTTP mode (HTTP/1.1 and HTTP/2) that reflects every request and echoes /echo, /sse "
        "and WebSocket: plain blocking-socket code made concurrent by gevent, one greenlet "
        "per connection.",
        epilog="SIGINT/SIGTERM stop accepting and drain open connections; a second "
        "signal closes them at once; SIGUSR1 logs a status line. Exit codes: 0 clean "
        "stop, 1 internal error, 2 bad arguments, 3 cannot listen, 4 forced stop.",
    )
    groups: dict[str | None, Any] = {None: parser}
    groups.update({key: parser.add_argument_group(title) for key, title in GROUPS.items()})
    transport = parser.add_mutually_exclusive_group()
    # In --help's order, the usage line too: the general settings, then each group's.
    order = [None, *GROUPS]
    for name, field in sorted(
        FIELDS.items(), key=lambda item: order.index(setting_of(item[0]).group)
    ):
        how = setting_of(name)
        target = groups[how.group]
        help_text = argparse.SUPPRESS if how.hidden else how.help
        if how.kind == "transport":  # --udp and --udp-only, one or the other
            flag = UDP_ONLY if name == "tcp" else flag_of(name)
            transport.add_argument(flag, action="store_true", help=help_text)
            continue
        if how.kind == "switch":
            target.add_argument(flag_of(name), action="store_true", help=help_text)
            continue
        if not how.hidden:
            shown = how.default_text or ("%(default)s" if field.default is not None else "off")
            help_text = f"{how.help} (default: {shown})"
        kind = KINDS[how.kind]
        target.add_argument(
            flag_of(name),
            dest=name,
            type=kind.parse,
            choices=how.choices,
            default=None if how.kind in REPEATABLE else field.default,
            action=Repeated if how.kind in REPEATABLE else "store",
            metavar=how.metavar,
            help=help_text,
        )
    return parser


def apply_environment(parser: argparse.ArgumentParser, environ: dict[str, str]) -> set[str]:
    """Take defaults from ``GEVENTSRV_<FLAG>`` variables; a bad value names its variable.

    Values are read by the flag's own kind and choices, so a variable means
    exactly what the flag would. On/off flags take 1/true/yes/on or 0/false/no/off.
    Returns the destinations the environment set.
    """
    taken: set[str] = set()
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        name = env_name(action)
        if name not in environ:
            continue
        text = environ[name].strip()
        value: object
        if action.nargs == 0:  # an on/off flag
            if text.lower() not in _TRUE + _FALSE:
                parser.error(f"{name}: takes 1/true/yes/on or 0/false/no/off, got {text!r}")
            value = text.lower() in _TRUE
        else:
            try:
                value = action.type(text) if callable(action.type) else text
            except (argparse.ArgumentTypeError, ValueError) as exc:
                parser.error(f"{name}: {exc}")
            if action.choices is not None and value not in action.choices:
                choices = ", ".join(map(str, action.choices))
                parser.error(f"{name}: must be one of {choices}, got {text!r}")
        parser.set_defaults(**{action.dest: value})
        if value:
            taken.add(action.dest)
    for group in parser._mutually_exclusive_groups:
        clash = [env_name(a) for a in group._group_actions if a.dest in taken]
        if len(clash) > 1:
            parser.error(f"{' and '.join(clash)}: not allowed together (like their flags)")
    warn_unknown_variables(parser, environ)
    return taken


#: Variables with the prefix that other geventsrv commands read, not the server.
#: (The tutorial's language, the lab's and the tests' switches, the cluster's locust users.)
OTHER_VARIABLES = ("GEVENTSRV_LANG", "GEVENTSRV_LAB", "GEVENTSRV_TEST_IO")
OTHER_PREFIXES = ("GEVENTSRV_CLUSTER_", "GEVENTSRV_FUZZ_")


def warn_unknown_variables(parser: argparse.ArgumentParser, environ: dict[str, str]) -> None:
    """One line on stderr per ``GEVENTSRV_*`` variable that sets nothing, naming the setting
    it most resembles: a misspelt variable would otherwise be ignored without a word."""
    known = {env_name(a) for a in parser._actions if a.option_strings and a.dest != "help"}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in OTHER_VARIABLES:
            continue
        if name.startswith(OTHER_PREFIXES):
            continue
        # Compared without the prefix, which every name shares.
        suffixes = sorted(known_name[len(ENV_PREFIX) :] for known_name in known)
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :], suffixes, n=1, cutoff=0.7)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else " (see --help)"
        print(f"{parser.prog}: warning: {name} is not a setting, ignored{hint}", file=sys.stderr)


def env_name(action: argparse.Action) -> str:
    """The variable that sets ``action``'s flag: ``--udp-only`` -> ``GEVENTSRV_UDP_ONLY``."""
    return ENV_PREFIX + action.option_strings[0].lstrip("-").replace("-", "_").upper()


def parse_config(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Parse ``argv`` (over ``GEVENTSRV_*`` in ``environ``, default ``os.environ``) into a
    validated :class:`Config`; bad input exits with code 2."""
    parser = build_parser()
    environ = dict(os.environ if environ is None else environ)
    apply_environment(parser, environ)
    args = parser.parse_args(argv)
    values = vars(args)
    udp_only = values.pop("udp_only")
    values["tcp"], values["udp"] = not udp_only, values["udp"] or udp_only
    values["idle_timeout"] = values["idle_timeout"] or None
    for name in ("allow", "deny", "listen"):
        values[name] = tuple(values[name] or ())
    try:
        return Config(**values).validate()
    except ConfigError as exc:
        fail(exc, parser, argv, environ)


def fail(
    exc: ConfigError,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
) -> NoReturn:
    """Show ``exc`` as argparse shows a bad argument, exit 2: ``argument --flag: ...``, or
    ``GEVENTSRV_FLAG: ...`` when the value came from the environment, not the command line
    (``argv`` and ``environ``, by default the process's own)."""
    parser = parser or build_parser()
    if exc.setting is None:
        parser.error(exc.problem)
    flag = UDP_ONLY if exc.setting == "tcp" else flag_of(exc.setting)
    variable = f"{ENV_PREFIX}{flag[2:].replace('-', '_').upper()}"
    given = sys.argv[1:] if argv is None else argv
    on_command_line = any(arg == flag or arg.startswith(flag + "=") for arg in given)
    from_environment = variable in (os.environ if environ is None else environ)
    if from_environment and not on_command_line:
        parser.error(f"{variable}: {exc.problem}")
    parser.error(f"argument {flag}: {exc.problem}")


def to_argv(config: Config) -> list[str]:
    """Flags that make :func:`parse_config` build ``config`` again, field for field.

    ``tests/test_flags.py`` checks ``parse_config(to_argv(c)) == c`` with every
    field changed.
    """
    argv: list[str] = []
    for name in FIELDS:
        how = setting_of(name)
        value = getattr(config, name)
        if how.kind == "transport":
            if name == "udp" and value:
                argv.append("--udp" if config.tcp else UDP_ONLY)
            continue
        if how.kind == "switch":
            argv += [flag_of(name)] if value else []
            continue
        written = KINDS[how.kind].write(value)
        if written:
            argv += [flag_of(name), *written]
    return argv
