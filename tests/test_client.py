"""`python -m geventsrv.client`, driven as a user would: through a pipe and through a terminal."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

from support import ROOT, connect

CLIENT = [sys.executable, "-m", "geventsrv.client"]


def run_client(*args: str, stdin: bytes = b"", timeout: float = 30):
    return subprocess.run(
        [*CLIENT, *args], input=stdin, capture_output=True, timeout=timeout, cwd=ROOT
    )


def test_piped_input_is_echoed_to_stdout_then_exit_0(start_server, rng):
    server = start_server()
    payload = rng.randbytes(3_000_000)
    result = run_client("--port", str(server.port), stdin=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    assert result.stderr == b""


def test_empty_input_half_closes_at_once(start_server):
    server = start_server()
    result = run_client("--port", str(server.port), stdin=b"")
    assert (result.returncode, result.stdout) == (0, b"")


def test_no_server_is_one_line_and_exit_3():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_client("--port", str(port))
    assert result.returncode == 3
    assert result.stderr.decode().strip() == (
        f"python -m geventsrv.client: error: cannot connect to 127.0.0.1:{port}: connection refused"
    )


def test_bad_port_is_exit_2():
    result = run_client("--port", "99999")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1


def test_a_reset_connection_is_one_line_and_exit_1():
    listener = socket.create_server(("127.0.0.1", 0))

    def reset_first_client() -> None:
        conn, _ = listener.accept()
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    threading.Thread(target=reset_first_client, daemon=True).start()
    port = listener.getsockname()[1]
    result = run_client("--port", str(port), stdin=b"hello\n")
    listener.close()
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and f"connection to 127.0.0.1:{port} failed: " in lines[0]
    # Which error names the reset depends on timing: recv() sees ECONNRESET, or the
    # half-close at the end of input finds the connection already gone (ENOTCONN).
    assert "reset by peer" in lines[0] or "not connected" in lines[0]


class Terminal:
    """The client on a pseudo-terminal, as a person at a keyboard would run it."""

    def __init__(self, port: int) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [*CLIENT, "--port", str(port)],
            stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        os.close(slave)
        self.screen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_for(self, text: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never appeared; screen: {self.screen!r}"
            if select.select([self.master], [], [], remaining)[0]:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the client exited and the terminal closed
                    break
        assert text in self.screen, self.screen
        return self.screen

    def close(self) -> int:
        code = self.proc.wait(10)
        os.close(self.master)
        return code


def test_a_person_at_a_terminal_gets_each_line_back(start_server):
    server = start_server("--mode", "upper")
    term = Terminal(server.port)
    term.type(b"hello there\n")
    term.wait_for(b"HELLO THERE")  # the server's reply, not the terminal's own echo
    term.type(b"and again\n")
    term.wait_for(b"AND AGAIN")
    term.type(b"\x04")  # Ctrl-D: end of input
    assert term.close() == 0


def test_in_chat_mode_others_lines_appear_while_you_type(start_server):
    server = start_server("--mode", "chat")
    term = Terminal(server.port)
    term.wait_for(b"already connected: nobody.")
    term.type(b"half a li")  # typing, Enter not pressed yet
    with connect(server.address) as friend:
        friend.sendall(b"hi from a friend\n")
        term.wait_for(b"> hi from a friend")  # shown while the line is unfinished
        term.type(b"ne\n")
        received = b""
        while b"half a line\n" not in received:
            received += friend.recv(4096)
        assert b"<user1> half a line\n" in received
    term.type(b"\x04")
    assert term.close() == 0


def test_ipv6_host_in_brackets_as_the_server_prints_it(start_server):
    server = start_server("--host", "[::1]")
    assert "listening on [::1]:" in server.stderr
    result = run_client("--host", "[::1]", "--port", str(server.port), stdin=b"six\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"six\n"


def test_help_is_plain_text():
    result = run_client("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "``" not in text and "\\\\n" not in text and ":class:" not in text
    assert "half-closed" in text and "Exit codes" in text


def test_a_closed_stdout_is_not_blamed_on_the_connection(start_server):
    """``... | python -m geventsrv.client | head -c 10``: ends quietly, no 'connection failed'."""
    server = start_server()
    proc = subprocess.Popen(
        [*CLIENT, "--port", str(server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(b"first line\n")
    proc.stdin.flush()
    assert proc.stdout.read(11) == b"first line\n"
    proc.stdout.close()  # the reader goes away, as head does
    proc.stdin.write(b"more that cannot be shown\n" * 1000)
    proc.stdin.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(20) == 141, stderr
    assert stderr == "", stderr
