"""``python -m geventsrv.client``: talk to an echo or chat server from a terminal or a pipe.

Everything read from standard input is sent; everything the server sends is
written to standard output as it arrives, so in chat mode other people's
lines appear while you type. At the end of input (Ctrl-D, or the end of a
pipe) the client half-closes the connection, prints what is still coming, and
exits 0 when the server closes: ``printf 'hi\\n' | python -m geventsrv.client``
works like ``nc -N``. Bytes pass through unchanged in both directions.

One thread and a ``selectors`` loop, no gevent: a small client needs no more,
and input and output never wait on each other (a large upload cannot deadlock
against its own echo).

Exit codes: 0 the server closed the connection (normally, after our input
ended); 1 the connection failed (reset); 2 bad arguments; 3 cannot connect.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
from collections.abc import Sequence

from geventsrv import cmdline, exitcodes
from geventsrv.addresses import format_address, strip_brackets
from geventsrv.config import DEFAULT_HOST, DEFAULT_PORT

PROG = "python -m geventsrv.client"
DESCRIPTION = (
    "Talk to an echo or chat server: standard input is sent, what the server sends is "
    "printed as it arrives. At the end of input the connection is half-closed (like "
    "nc -N) and the client exits once the server closes. Exit codes: 0 the server "
    "closed, 1 the connection failed, 2 bad arguments, 3 cannot connect."
)
CHUNK = 65536
#: Stop reading input while this much is still waiting to be sent.
MAX_PENDING = 1 << 20


class OutputClosed(BrokenPipeError):
    """Standard output was closed by its reader (``| head``): not the connection's fault."""


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"port must be an integer from 1 to 65535, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = cmdline.Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument(
        "--host",
        type=strip_brackets,
        default=DEFAULT_HOST,
        help="server address, IPv6 with or without brackets (default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="server port (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=cmdline.positive_number,
        default=10.0,
        help="seconds to wait for the connection (default: %(default)s)",
    )
    return parser


def relay(sock: socket.socket, stdin_fd: int, stdout_fd: int) -> None:
    """Copy stdin to ``sock`` and ``sock`` to stdout until the server closes.

    Input is read only while less than :data:`MAX_PENDING` bytes wait to be
    sent, so a server that stops reading cannot make the client buffer
    without bound. Raises ``OSError`` if the connection fails.
    """
    sock.setblocking(False)
    # poll(), not epoll: epoll refuses regular files, and stdin may be one.
    selector = selectors.PollSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(stdin_fd, selectors.EVENT_READ)
    pending = bytearray()
    reading_input = True  # stdin registered with the selector
    input_ended = False
    half_closed = False
    while True:
        for key, events in selector.select():
            if key.fileobj is sock:
                if events & selectors.EVENT_READ:
                    data = sock.recv(CHUNK)
                    if not data:
                        return  # the server closed its side: done
                    _write_all(stdout_fd, data)
                if events & selectors.EVENT_WRITE and pending:
                    del pending[: sock.send(pending)]
            else:
                data = os.read(stdin_fd, CHUNK)
                pending += data
                input_ended = not data
        want_input = not input_ended and len(pending) < MAX_PENDING
        if want_input != reading_input:
            if want_input:
                selector.register(stdin_fd, selectors.EVENT_READ)
            else:
                selector.unregister(stdin_fd)
            reading_input = want_input
        selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0))
        if input_ended and not pending and not half_closed:
            sock.shutdown(socket.SHUT_WR)  # like nc -N: our side is finished
            half_closed = True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        raise OutputClosed() from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    where = format_address(args.host, args.port)
    try:
        sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        print(f"{PROG}: error: cannot connect to {where}: {reason}", file=sys.stderr)
        return exitcodes.CANNOT_CONNECT
    with sock:
        try:
            relay(sock, sys.stdin.fileno(), sys.stdout.fileno())
        except OutputClosed:
            raise  # cmdline.run() ends quietly
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            print(f"{PROG}: error: connection to {where} failed: {reason}", file=sys.stderr)
            return exitcodes.CONNECTION_FAILED
        except KeyboardInterrupt:
            return exitcodes.OK
    return exitcodes.OK


if __name__ == "__main__":
    cmdline.run(main, PROG)
