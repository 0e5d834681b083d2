"""The flag table: to_argv() is the exact inverse of parse_config(), field for field."""

from __future__ import annotations

import dataclasses

import pytest

from geventsrv.config import Config
from geventsrv.flags import parse_config, to_argv

#: A value other than the default for every field of Config. A field added to
#: Config without an entry here (and a flag in flags.py) fails the test below.
CHANGED = {
    "host": "::1",
    "port": 0,
    "mode": "upper",
    "backlog": 17,
    "max_conns": 33,
    "idle_timeout": 2.5,
    "drain_timeout": 0.25,
    "log_level": "debug",
    "tcp": False,
    "udp": True,
    "workers": 3,
    "reuse_port": True,
    "worker_id": 2,
    "io": "patched",
    "tls_cert": "/etc/geventsrv/cert.pem",
    "tls_key": "/etc/geventsrv/key.pem",
    "tls_ca": "/etc/geventsrv/ca.pem",
    "tls_handshake_timeout": 2.5,
    "tls_alpn": ("h2", "http/1.1"),
    "proxy_protocol": "v2",
    "proxy_allow_from": ("10.0.0.0/8", "fd00::/8"),
    "proxy_timeout": 0.5,
}


def test_every_field_has_a_changed_value_here():
    assert set(CHANGED) == {field.name for field in dataclasses.fields(Config)}


def test_defaults_round_trip():
    assert parse_config(to_argv(Config())) == Config()


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_field_round_trips_alone(name):
    changes = {name: CHANGED[name]}
    if name == "tcp":
        changes["udp"] = True  # something must be served
    if name == "workers":
        changes["udp"] = False
    if name in ("tls_key", "tls_ca"):
        changes["tls_cert"] = CHANGED["tls_cert"]
    config = Config(**changes).validate()  # type: ignore[arg-type]
    assert parse_config(to_argv(config)) == config


def test_idle_timeout_none_round_trips_as_never():
    config = Config(idle_timeout=None)
    assert parse_config(to_argv(config)) == config


def test_all_fields_changed_at_once_round_trip():
    # TLS and the PROXY protocol need TCP, so TCP stays on beside UDP.
    config = Config(**dict(CHANGED, workers=1, tcp=True)).validate()  # type: ignore[arg-type]
    assert parse_config(to_argv(config)) == config


@pytest.mark.parametrize("text", ["[::1]", "::1"])
def test_ipv6_hosts_with_or_without_brackets(text):
    assert parse_config(["--host", text]).host == "::1"
