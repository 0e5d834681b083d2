"""What the http mode counts and logs: one access-log line per request, and the metrics."""

from __future__ import annotations

import json
import socket

from http1client import exchange, read_response
from support import CLIENT_TIMEOUT, scraped


def test_the_access_log_has_one_line_per_request(start_server):
    server = start_server("--mode", "http", "--access-log", "--log-format", "json")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        buffer = bytearray()
        for path in ("/a", "/b?status=404"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            read_response(sock, buffer)
    server.wait_for_log(r'"status": 404')
    entries = [json.loads(text) for text in server.lines if '"logger": "geventsrv.access"' in text]
    assert [(e["method"], e["target"], e["version"], e["status"]) for e in entries] == [
        ("GET", "/a", "1.1", 200), ("GET", "/b?status=404", "1.1", 404),
    ]  # fmt: skip


def test_metrics_count_requests_by_method_and_status_class(start_server):

    server = start_server("--mode", "http", "--metrics", "127.0.0.1:0")
    port = int(server.wait_for_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
    for raw in (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /?status=503 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"PURGE / HTTP/1.1\r\nHost: x\r\n\r\n",  # a cache's method: counted as "other"
    ):
        exchange(server, raw)
    samples = scraped(port)
    requests = "geventsrv_http_requests_total"
    version = ("version", "1.1")
    assert samples[(requests, (("method", "GET"), ("status_class", "2xx"), version))] == 1
    assert samples[(requests, (("method", "POST"), ("status_class", "5xx"), version))] == 1
    assert samples[(requests, (("method", "other"), ("status_class", "2xx"), version))] == 1
    assert samples[("geventsrv_http_request_duration_seconds_count", ())] == 3
