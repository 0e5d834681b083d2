"""The settings machinery: the checks every group of settings is judged by."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from geventsrv.settings import (
    ConfigError,
    check_choice,
    check_integer,
    check_networks,
    check_seconds,
    flag_of,
)


@dataclass
class Values:
    number: object = 5
    seconds: object = 1.5
    word: object = "a"
    networks: object = ("10.0.0.0/8",)


CASES = [
    ("number", lambda v: check_integer(v, "number", 1, 10), 11,
     "number: must be a whole number from 1 to 10, got 11"),
    ("number", lambda v: check_integer(v, "number", 1, 10), True, "must be a whole number"),
    ("number", lambda v: check_integer(v, "number", 0, 10, "0 (none)"), -1,
     r"from 0 \(none\) to 10"),
    ("seconds", lambda v: check_seconds(v, "seconds"), -1,
     "seconds: must be a number, 0 or more, of seconds"),
    ("seconds", lambda v: check_seconds(v, "seconds", positive=True), 0,
     "must be a positive number"),
    ("seconds", lambda v: check_seconds(v, "seconds"), float("nan"), "must be"),
    ("seconds", lambda v: check_seconds(v, "seconds", most=2), 2.5, "at most 2, got 2.5"),
    ("word", lambda v: check_choice(v, "word", ("a", "b")), "c",
     "word: must be one of a, b, got 'c'"),
    ("networks", lambda v: check_networks(v, "networks"), ("10.0.0.0/33",),
     "takes networks such as"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "check", "value", "said"), CASES)
def test_a_check_names_the_setting_and_what_is_wrong(name, check, value, said):
    values = Values()
    setattr(values, name, value)
    with pytest.raises(ConfigError, match=said) as caught:
        check(values)
    assert caught.value.setting == name


def test_good_values_pass_and_a_flag_is_named_after_its_field():
    values = Values()
    check_integer(values, "number", 1, 10)
    check_seconds(values, "seconds", positive=True, most=2)
    check_choice(values, "word", ("a",))
    check_networks(values, "networks")
    assert flag_of("idle_timeout") == "--idle-timeout"
