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
        ({"port": 65536}, "port must be an integer from 0 to 65535"),
        ({"port": -1}, "port must be"),
        ({"mode": "loud"}, "mode must be one of echo"),
        ({"backlog": 0}, "backlog must be at least 1"),
        ({"max_conns": 0}, "max-conns must be at least 1"),
        ({"idle_timeout": 0}, "idle-timeout must be a positive"),
        ({"drain_timeout": -1}, "drain-timeout must be 0 or more"),
        ({"log_level": "loud"}, "log-level must be one of"),
    ],
)
def test_validate_names_the_bad_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config().replace(**changes)


def test_replace_keeps_other_fields():
    config = Config().replace(port=0, mode="upper")
    assert (config.port, config.mode, config.host) == (0, "upper", "127.0.0.1")
