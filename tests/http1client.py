"""An HTTP/1.1 client as raw as the tests need: responses read off a socket byte for byte,
chunks as they were framed, and curl as users drive it."""

from __future__ import annotations

import http.client
import socket
import subprocess

from support import CLIENT_TIMEOUT, require_tool


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-cased headers, body) from ``buffer``, then ``sock``."""
    status, headers = head_of(sock, buffer)
    size = int(headers.get("content-length", "0"))
    while len(buffer) < size:
        data = sock.recv(65536)
        if not data:
            raise EOFError(bytes(buffer))
        buffer += data
    body = bytes(buffer[:size])
    del buffer[:size]
    return status, headers, body


def exchange(server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw)
        return read_response(sock, bytearray())


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("curl", "curl"), "-sS", "--max-time", "10", *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def read_chunked(sock: socket.socket, buffer: bytearray) -> list[bytes]:
    """The chunks of a chunked body, each as sent, up to the last (empty) one."""
    pieces: list[bytes] = []
    while True:
        while b"\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise EOFError(bytes(buffer))
            buffer += data
        size_line, _, rest = bytes(buffer).partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            data = sock.recv(65536)
            if not data:
                raise EOFError(rest)
            rest += data
        assert rest[size : size + 2] == b"\r\n"
        del buffer[:]
        buffer += rest[size + 2 :]
        if size == 0:
            return pieces
        pieces.append(rest[:size])


def head_of(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str]]:
    """A response's status and lower-cased headers; what follows them stays in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise EOFError(bytes(buffer))
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[:]
    buffer += rest
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers


def fetch(
    server,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request through the standard library's client: status, headers (``get_all`` for
    repeated ones) and the body as it came (never decoded)."""
    host, port = server.address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()
