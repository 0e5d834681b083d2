"""The per-request controls, judged: bounds, the words they take, and which one wins."""

from __future__ import annotations

import re

import pytest

from geventsrv.http.controls import (
    PLAIN,
    BadControl,
    ControlsJudge,
    extra_header,
    query_pairs,
)
from geventsrv.http.exchange import Request


def judged(query: bytes = b"", *headers: tuple[bytes, bytes], most: float = 10.0):
    request = Request(b"GET", b"/?" + query, "1.1", [(b"Host", b"x"), *headers])
    return ControlsJudge(most)(request, query)


def test_nothing_asked_is_the_plain_answer():
    assert judged() == PLAIN


def test_the_query_wins_over_a_header_and_the_last_of_a_repeated_control_wins():
    assert judged(b"status=201", (b"X-Echo-Status", b"500")).status == 201
    assert judged(b"", (b"X-Echo-Status", b"500"), (b"x-echo-status", b"502")).status == 502
    assert judged(b"status=201&status=202").status == 202


@pytest.mark.parametrize(
    ("query", "said"),
    [
        (b"status=99", "status must be a whole number from 200 to 599, got '99'"),
        (b"status=abc", "status must be a whole number"),
        (b"delay=11", "delay must be 0 to 10 seconds (--http-max-delay), got '11'"),
        (b"delay=-1", "delay must be 0 to 10"),
        (b"close=maybe", "close must be 1, true, yes or 0, false, no, got 'maybe'"),
        (b"bytes=1073741825", "bytes must be a whole number from 0 to 1073741824"),
        (b"chunks=0", "chunks must be a whole number from 1"),
        (b"chunks=12&interval=1", "delay + interval x (chunks - 1) must be at most 10 seconds"),
        (b"header=NoColon", "header must be 'Name: value'"),
        (b"header=Content-Length:%201", "Content-Length frames the message"),
        (b"header=X:%20a%0D%0Ab", "may not hold CR, LF or NUL"),
        (b"header=N%C3%A4me:%20v", "with a token for a name"),
    ],
)
def test_a_control_that_cannot_be_used_says_why(query, said):
    with pytest.raises(BadControl, match=re.escape(said)):
        judged(query)


@pytest.mark.parametrize(("text", "on"), [("1", True), ("yes", True), ("TRUE", True),
                                          ("0", False), ("no", False), ("", False)])  # fmt: skip
def test_close_takes_on_and_off_words(text, on):
    assert judged(b"close=" + text.encode()).close is on


def test_an_interval_past_the_bound_is_capped_when_not_asked_for():
    assert judged(b"chunks=2", most=0.5).interval == 0.5


def test_judged_controls_are_remembered_per_query_and_headers():
    judge = ControlsJudge(10.0)
    request = Request(b"GET", b"/?status=201", "1.1", [(b"Host", b"x")])
    assert judge(request, b"status=201") is judge(request, b"status=201")


def test_query_pairs_are_decoded_and_names_lower_cased():
    assert list(query_pairs(b"A=1&b=x%20y&c+d=e+f&&g#frag")) == [
        ("a", "1"), ("b", "x y"), ("c d", "e f"), ("g", ""),
    ]  # fmt: skip


def test_an_extra_header_keeps_its_case():
    assert extra_header("X-Test:  spaced ") == (b"X-Test", b"spaced")
