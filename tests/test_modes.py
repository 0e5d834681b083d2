"""The mode table: every mode has a handler, and Config judges UDP and workers by the table."""

from __future__ import annotations

import pytest

from geventsrv import modes
from geventsrv.config import Config, ConfigError
from geventsrv.flags import build_parser


@pytest.mark.parametrize("name", modes.MODE_NAMES)
def test_every_mode_builds_a_handler(name):
    handler = modes.get(name).make_handler(Config())
    assert callable(handler)


def test_chat_gets_a_fresh_room_per_server():
    """Two servers in one process must not share one chat room."""
    first, second = (modes.get("chat").make_handler(Config()) for _ in range(2))
    assert first.__self__ is not second.__self__  # type: ignore[attr-defined]


def test_udp_transforms():
    assert modes.get("echo").udp_transform is None
    transform = modes.get("upper").udp_transform
    assert transform is not None and transform(b"abc\xe9") == b"ABC\xe9"


@pytest.mark.parametrize("name", modes.MODE_NAMES)
def test_config_allows_udp_and_workers_exactly_where_the_table_says(name):
    mode = modes.get(name)
    for changes, allowed in (
        ({"udp": True}, mode.serves_udp),
        ({"workers": 2}, mode.across_workers),
    ):
        if allowed:
            Config(mode=name, **changes).validate()
        else:
            with pytest.raises(ConfigError, match=f"{name}"):
                Config(mode=name, **changes).validate()


def test_the_command_line_offers_every_mode():
    action = next(a for a in build_parser()._actions if a.dest == "mode")
    assert action.choices is not None and tuple(action.choices) == modes.MODE_NAMES
