"""Thread per connection: the blocking model, with the standard library only.

Each connection gets an OS thread running the plainest loop there is. Simple
and correct; its costs are one thread stack per client (virtual memory, and
a kernel task the scheduler must juggle) and the GIL handing over between
thousands of threads.
"""

from __future__ import annotations

import socket
import threading

from geventsrv.bench.servers._common import announce, exit_on_sigterm, parse_address


def handle(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass  # reset by the client: this connection only


def main() -> None:
    exit_on_sigterm()
    threading.stack_size(256 * 1024)  # thousands of threads: keep each stack small
    listener = socket.create_server(parse_address(__doc__), backlog=4096)
    announce(listener.getsockname())
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
