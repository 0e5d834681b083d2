"""``--listen``: more listeners in one process, each with its own mode, TLS and PROXY settings.

A listener is written ``[HOST:]PORT[,KEY=VALUE|udp...]``, for instance
``8443,tls-cert=/certs/tls.crt,tls-key=/certs/tls.key`` (HTTPS beside the
plain port) or ``7,mode=echo,udp``. The keys are :data:`KEYS`; anything the
spec does not say comes from the server's own settings (limits, timeouts, the
HTTP mode's settings), except what belongs to one socket: a listener serves
plain TCP, no PROXY header and no UDP unless its spec says so. The host
defaults to ``--host``.

This module only reads specs and derives each listener's
:class:`~geventsrv.config.Config`; :mod:`geventsrv.servergroup` runs them.
It imports no settings at load time, so that :mod:`geventsrv.config` may
call it from :meth:`~geventsrv.config.Config.validate`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from geventsrv.addresses import strip_brackets
from geventsrv.settings import ConfigError, flag_of

if TYPE_CHECKING:
    from geventsrv.config import Config

#: What a spec may set, with the Config field each key names.
KEYS = {
    "mode": "mode",
    "tls-cert": "tls_cert",
    "tls-key": "tls_key",
    "tls-ca": "tls_ca",
    "proxy-protocol": "proxy_protocol",
}
#: Keys written alone: ``udp`` also serves UDP echo on the listener's port.
SWITCHES = {"udp": "udp"}

#: What every listener starts from, whatever the server's own socket does.
SOCKET_DEFAULTS: dict[str, Any] = {
    "tls_cert": None,
    "tls_key": None,
    "tls_ca": None,
    "tls_alpn": (),
    "proxy_protocol": None,
    "udp": False,
    "tcp": True,
    "listen": (),
}
#: Settings that go with TLS or a PROXY header, kept only when the listener has it.
#: Settings that apply only to a listener with TLS (HTTP/3 is served beside those alone).
WITH_TLS = (
    "tls_handshake_timeout", "http3", "http3_retry", "http3_max_datagram", "http3_alt_svc_port",
)  # fmt: skip
WITH_PROXY = ("proxy_allow_from", "proxy_timeout")

SYNTAX = "[HOST:]PORT[,KEY=VALUE...]"


def parse_spec(spec: str, default_host: str) -> dict[str, Any]:
    """The Config changes one spec asks for (host and port included).

    Raises ``ValueError`` with a message fit for a user.
    """
    where, *options = [part.strip() for part in spec.split(",")]
    host, port = _host_port(where, default_host)
    changes: dict[str, Any] = {"host": host, "port": port}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep and key in SWITCHES:
            changes[SWITCHES[key]] = True
        elif sep and key in KEYS and value:
            changes[KEYS[key]] = value
        else:
            known = ", ".join([*(f"{k}=..." for k in KEYS), *SWITCHES])
            raise ValueError(f"{spec!r}: {option!r} is not a listener option (options: {known})")
    return changes


def _host_port(text: str, default_host: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host = default_host
    host = strip_brackets(host)
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: a listener is {SYNTAX}, with a port from 0 to 65535")
    return host, int(port)


def listener_config(config: Config, spec: str) -> Config:
    """The settings of the listener ``spec``, derived from the server's ``config``.

    Not validated here: :func:`listener_configs` does, naming ``--listen``.
    """
    from geventsrv import modes

    changes = {**SOCKET_DEFAULTS, **parse_spec(spec, config.host)}
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    if changes["tls_cert"] is None:
        changes.update({name: defaults[name] for name in WITH_TLS})
    if changes["proxy_protocol"] is None:
        changes.update({name: defaults[name] for name in WITH_PROXY})
    # Another mode's settings stay with the listeners of that mode.
    mode = modes.MODES.get(changes.get("mode", config.mode))
    for other in modes.MODES.values():
        if other.settings is not None and (mode is None or other.settings is not mode.settings):
            changes.update({f.name: f.default for f in dataclasses.fields(other.settings)})
    return dataclasses.replace(config, **changes)


def listener_configs(config: Config) -> list[Config]:
    """Every extra listener's validated settings, in the order given.

    Raises :class:`~geventsrv.settings.ConfigError` for ``listen``, naming the
    spec and what is wrong with it.
    """
    listeners = []
    for spec in config.listen:
        try:
            listener = listener_config(config, spec)
        except ValueError as exc:
            raise ConfigError("listen", str(exc)) from None
        try:
            listener.validate()
        except ConfigError as exc:
            what = flag_of(exc.setting)[2:] if exc.setting else "it"
            raise ConfigError("listen", f"{spec!r}: {what} {exc.problem}") from None
        if config.workers > 1 and listener.port == 0:
            raise ConfigError(
                "listen", f"{spec!r}: worker processes share a port: give it one, not 0"
            )
        listeners.append(listener)
    return listeners


def asked(config: Config, name: str) -> list[Any]:
    """The values of the field ``name`` that ``--listen`` specs give (bad specs skipped:
    :func:`listener_configs` judges them)."""
    values = []
    for spec in config.listen:
        try:
            changes = parse_spec(spec, config.host)
        except ValueError:
            continue
        if name in changes:
            values.append(changes[name])
    return values
