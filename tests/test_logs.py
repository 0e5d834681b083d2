"""Log formats and the access log, read from a real server's stderr line by line."""

from __future__ import annotations

import contextlib
import json
import logging
import signal

from support import connect, echo_through, recv_until_eof

from geventsrv.logs import JsonFormatter


def json_lines(server) -> list[dict]:
    """Every stderr line, each parsed as one JSON object (fails on any that is not)."""
    return [json.loads(line) for line in server.lines if line.strip()]


def test_json_lines_from_start_to_stop(start_server, rng):
    server = start_server("--log-format", "json", "--log-level", "debug")
    with connect(server.address) as sock:
        assert echo_through(sock, b"hello", rng) == b"hello"
    server.wait_for_log("closed after 5 byte")
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0
    lines = json_lines(server)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert lines[0]["message"].startswith("listening on 127.0.0.1:")
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "geventsrv.server"
    assert lines[0]["time"].endswith("Z") and "T" in lines[0]["time"]
    assert any(line["level"] == "debug" for line in lines)
    assert lines[-1]["message"].startswith("stopped: 1 connection(s) served")


def test_access_log_one_line_per_connection_with_its_reason(start_server, rng):
    server = start_server(
        "--log-format", "json", "--access-log", "--idle-timeout", "0.5", "--mode", "upper"
    )
    with connect(server.address) as sock:
        assert echo_through(sock, b"abc", rng) == b"ABC"
    idle = connect(server.address)
    with contextlib.suppress(ConnectionResetError):
        recv_until_eof(idle)
    idle.close()
    server.wait_for_log('"reason": "idle"')
    access = [line for line in json_lines(server) if line["logger"] == "geventsrv.access"]
    assert [line["reason"] for line in access] == ["eof", "idle"]
    first = access[0]
    assert first["received"] == first["sent"] == 3
    assert first["client"] == "127.0.0.1:{}".format(first["client"].rsplit(":", 1)[1])
    assert 0 <= first["duration"] < 5
    assert access[1]["duration"] >= 0.5


def test_no_access_log_by_default(start_server):
    server = start_server()
    server.round_trip()
    server.send_signal(signal.SIGTERM)
    server.wait(10)
    assert "geventsrv.access" not in server.stderr


def test_text_access_log_line(start_server):
    server = start_server("--access-log")
    server.round_trip(b"12345")
    line = server.wait_for_log(r"geventsrv\.access: 127\.0\.0\.1:\d+: eof after").string
    assert line.rstrip().endswith("5 byte(s) in, 5 out")


def test_json_formatter_keeps_structured_fields_and_exceptions():
    formatter = JsonFormatter(worker_id=3)
    record = logging.LogRecord("geventsrv.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    record.client = "[::1]:5"
    fields = json.loads(formatter.format(record))
    assert fields["message"] == "a b" and fields["worker"] == 3 and fields["client"] == "[::1]:5"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(formatter.format(record))["exception"]
