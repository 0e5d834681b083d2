"""How a setting is declared and judged: the machinery under every group of settings.

A setting is a field of a frozen dataclass declared with :func:`setting`: its
default, the help line ``--help`` shows, how its value is written on a command
line (its *kind*) and its group there. :class:`~geventsrv.config.Config` is
made of such fields: the server's own, and each mode's (a mode declares its
settings beside its code, as :mod:`geventsrv.http.settings` does), and
:mod:`geventsrv.flags` derives the flags and ``GEVENTSRV_*`` variables from
them all.

A value is judged by the ``check_*`` functions, which raise :class:`ConfigError`
naming the setting, so that the command line can say ``argument --port: ...``
as argparse does. This module knows nothing of modes or of the server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A setting's value cannot be used; ``str()`` is a message for the user.

    ``setting`` names the field at fault (``None`` when no single one is), and
    ``problem`` says what is wrong with it, so that the command line can say
    ``argument --port: must be ...`` as argparse does.
    """

    def __init__(self, setting: str | None, problem: str) -> None:
        super().__init__(f"{setting}: {problem}" if setting else problem)
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class Setting:
    """How one field appears on the command line (see :func:`setting`)."""

    help: str
    #: How the value is written: a key of :data:`geventsrv.flags.KINDS`.
    kind: str = "text"
    group: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: What ``--help`` says the default is, when ``%(default)s`` would not say it well.
    default_text: str | None = None
    #: Set by the supervisor for its workers, never by a person: not in ``--help``.
    hidden: bool = False


def setting(default: Any, help: str, **how: Any) -> Any:
    """A dataclass field with its default and its :class:`Setting`."""
    return field(default=default, metadata={"setting": Setting(help, **how)})


def flag_of(name: str) -> str:
    """The command-line flag of the field ``name``: ``idle_timeout`` -> ``--idle-timeout``."""
    return "--" + name.replace("_", "-")


def check_integer(settings: object, name: str, low: int, high: int, low_text: str = "") -> None:
    """``name`` must be a whole number from ``low`` to ``high``."""
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            name, f"must be a whole number from {low_text or low} to {high}, got {value!r}"
        )


def check_seconds(
    settings: object, name: str, positive: bool = False, most: float | None = None
) -> None:
    """``name`` must be a finite number of seconds, 0 or more (above 0 if ``positive``),
    and at most ``most`` if given."""
    value = getattr(settings, name)
    ok = isinstance(value, (int, float)) and (value > 0 if positive else value >= 0)
    if not ok or not value < float("inf") or (most is not None and value > most):
        what = "a positive number" if positive else "a number, 0 or more,"
        bound = f", at most {most:g}" if most is not None else ""
        raise ConfigError(name, f"must be {what} of seconds{bound}, got {value!r}")


def check_choice(settings: object, name: str, choices: tuple[str, ...]) -> None:
    """``name`` must be one of ``choices``."""
    value = getattr(settings, name)
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")


def check_networks(settings: object, name: str) -> None:
    """``name`` must be a sequence of networks (CIDR, or a bare address)."""
    for network in getattr(settings, name):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                name, f"takes networks such as 10.0.0.0/8 or ::1, got {network!r}"
            ) from None
