"""Accept failures sorted and paced, in-process: no socket has to fail for real."""

from __future__ import annotations

import errno
import logging

import pytest
from support import os_error

from geventsrv.accepting import AcceptErrors, RateLimitedLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="geventsrv.server")
    return caplog


error = os_error


def test_rate_limited_log_says_how_many_it_held_back(logs):
    clock = FakeClock()
    line = RateLimitedLog(5.0, clock=clock)
    for _ in range(4):
        line(logging.WARNING, "out of %s", "files")
        clock.now += 1
    clock.now += 1  # 5 s after the first
    line(logging.WARNING, "out of %s", "files")
    messages = [r.getMessage() for r in logs.records]
    assert messages == ["out of files", "out of files (3 similar suppressed)"]


def test_accept_errors_are_sorted_by_errno():
    errors = AcceptErrors(0.01, 1.0, RateLimitedLog(5.0))
    assert errors.failed(error(errno.ECONNABORTED), 0) == 0.0
    assert errors.count == 0  # one queued connection's trouble is not counted
    assert errors.failed(error(errno.EMFILE), 3) == 0.01
    assert errors.failed(error(errno.EBADF), 3) is None


def test_back_off_doubles_to_its_ceiling_and_resets_on_success(logs):
    errors = AcceptErrors(0.01, 1.0, RateLimitedLog(5.0))
    pauses = [errors.failed(error(errno.EMFILE), 10) for _ in range(9)]
    assert pauses == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0]
    warnings = [r for r in logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the other eight fell within the log interval
    errors.succeeded()
    assert errors.backoff == 0.0
    assert logs.records[-1].getMessage() == "accepting again"
    assert errors.failed(error(errno.ENFILE), 0) == 0.01
