"""Config: defaults, validation messages, addresses."""

from __future__ import annotations

import pytest

from geventsrv.config import DEFAULT_PORT, Config, ConfigError


def test_defaults_are_valid_and_unprivileged():
    config = Config().validate()
    assert 1024 <= DEFAULT_PORT == config.port <= 65535
    assert config.host == "127.0.0.1"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"port": 65536}, "port: must be a whole number from 0 to 65535"),
        ({"port": -1}, "port: must be"),
        ({"port": True}, "port: must be a whole number"),
        ({"mode": "loud"}, "mode: must be one of echo"),
        ({"backlog": 0}, "backlog: must be a whole number from 1"),
        ({"max_conns": 0}, "max_conns: must be a whole number from 1 to 1048576"),
        ({"idle_timeout": 0}, "idle_timeout: must be a positive"),
        ({"drain_timeout": -1}, "drain_timeout: must be a number, 0 or more,"),
        ({"drain_timeout": float("nan")}, "drain_timeout: must be"),
        ({"shutdown_delay": float("inf")}, "shutdown_delay: must be"),
        ({"log_level": "loud"}, "log_level: must be one of"),
        ({"tls_ca": "ca.pem"}, "tls_ca: needs --tls-cert"),
    ],
)
def test_validate_names_the_bad_value(changes, message):
    with pytest.raises(ConfigError, match=message) as caught:
        Config().replace(**changes)
    assert caught.value.setting == next(iter(changes))


def test_every_setting_is_declared_with_help_and_a_kind_the_flags_know():
    from geventsrv.config import FIELDS, setting_of
    from geventsrv.flags import KINDS

    for name in FIELDS:
        how = setting_of(name)
        assert how.kind in KINDS, name
        assert how.help or how.hidden, name


def test_replace_keeps_other_fields():
    config = Config().replace(port=0, mode="upper")
    assert (config.port, config.mode, config.host) == (0, "upper", "127.0.0.1")
