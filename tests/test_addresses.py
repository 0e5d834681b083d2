"""Addresses as printed and as sockets take them."""

from __future__ import annotations

import pytest

from geventsrv.addresses import format_address, strip_brackets


@pytest.mark.parametrize(
    "host, port, text",
    [("127.0.0.1", 7, "127.0.0.1:7"), ("::1", 7007, "[::1]:7007"), ("localhost", 0, "localhost:0")],
)
def test_format_address(host, port, text):
    assert format_address(host, port) == text


@pytest.mark.parametrize(
    "text, host", [("[::1]", "::1"), ("::1", "::1"), ("127.0.0.1", "127.0.0.1"), ("[x", "[x")]
)
def test_strip_brackets(text, host):
    assert strip_brackets(text) == host
