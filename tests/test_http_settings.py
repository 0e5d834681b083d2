"""The http mode's settings: judged under the http mode, refused under any other."""

from __future__ import annotations

import pytest

from geventsrv.config import Config, ConfigError


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"http_max_body": -1}, "http_max_body: must be a whole number from 0 to 1073741824"),
        ({"http_max_delay": 3600.5}, "http_max_delay: must be a number, 0 or more, of seconds, "
                                     "at most 3600"),
        ({"http_header_timeout": 0}, "http_header_timeout: must be a positive number"),
        ({"ws_max_message": 0}, "ws_max_message: must be a whole number from 1"),
        ({"grpc_max_message": 15}, "grpc_max_message: must be a whole number from 16"),
    ],
)  # fmt: skip
def test_the_mode_judges_its_own_settings(changes, said):
    with pytest.raises(ConfigError, match=said):
        Config(mode="http", **changes).validate()


@pytest.mark.parametrize("mode", ["echo", "upper", "info", "chat"])
def test_another_mode_refuses_them_unless_left_at_their_defaults(mode):
    Config(mode=mode, http_max_body=Config().http_max_body).validate()
    with pytest.raises(ConfigError, match="http_max_body: applies to --mode http only"):
        Config(mode=mode, http_max_body=10).validate()


def test_the_bounds_are_inclusive():
    Config(mode="http", http_max_delay=3600, http_max_body=0, ws_max_message=1).validate()
