"""The HTTP lab's load drivers: wrk and h2load run for real against the http mode, their
figures read the same way whichever tool made them."""

from __future__ import annotations

import pytest
from support import free_port, require_tool

from geventsrv.bench import httpload


@pytest.mark.parametrize(("protocol", "tool"), [("h1", "wrk"), ("h2c", "h2load")])
def test_a_window_of_load_gives_requests_and_no_errors(http_server, protocol, tool):
    require_tool(tool, httpload.TOOLS[protocol][1])
    figures = httpload.run(protocol, http_server.port, "/?bytes=40", connections=2, seconds=1)
    assert figures["requests"] > 0 and figures["requests_per_s"] > 0
    assert figures["errors"] == 0
    if protocol == "h1":
        assert figures["p99_ms"] > 0
    else:
        assert figures["p99_ms"] is None  # h2load gives no percentiles


@pytest.mark.parametrize(("protocol", "tool"), [("h1", "wrk"), ("h2c", "h2load")])
def test_answers_that_are_not_2xx_are_errors(http_server, protocol, tool):
    require_tool(tool, httpload.TOOLS[protocol][1])
    figures = httpload.run(protocol, http_server.port, "/?status=503", connections=1, seconds=1)
    assert figures["requests"] > 0 or figures["errors"] > 0
    assert figures["errors"] > 0


def test_a_missing_tool_is_one_line_naming_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no tool is found
    with pytest.raises(httpload.LoadError, match=r"h2load is not installed .*nghttp2-client"):
        httpload.tool("h2c")


@pytest.mark.parametrize(("protocol", "tool"), [("h1", "wrk"), ("h2c", "h2load")])
def test_a_port_nobody_answers_is_a_load_error(protocol, tool):
    """h2load exits 0 having done nothing when it cannot connect: that is caught too."""
    require_tool(tool, httpload.TOOLS[protocol][1])
    closed_port = free_port()
    with pytest.raises(httpload.LoadError, match=f"{tool} failed"):
        httpload.run(protocol, closed_port, "/", connections=1, seconds=1)
