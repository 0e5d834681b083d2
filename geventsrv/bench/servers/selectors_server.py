"""One thread, an epoll loop (``selectors``), callbacks: IO multiplexing by hand.

The readiness model without a framework: the kernel reports which sockets
can be read or written, and the loop does just that much work for each. Bytes
that cannot be sent yet wait in a per-connection buffer, and the connection
stops reading until they are out, so memory stays bounded.
"""

from __future__ import annotations

import selectors
import socket

from geventsrv.bench.servers._common import announce, exit_on_sigterm, parse_address

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def main() -> None:
    exit_on_sigterm()
    selector = selectors.DefaultSelector()
    listener = socket.create_server(parse_address(__doc__), backlog=4096)
    listener.setblocking(False)
    selector.register(listener, READ)
    announce(listener.getsockname())
    unsent: dict[socket.socket, bytes] = {}
    while True:
        for key, events in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                for _ in range(64):  # accept a batch, not one per wakeup
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    selector.register(conn, READ)
                continue
            data = b""
            try:
                if events & WRITE:
                    data = unsent.pop(sock)
                else:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionResetError  # the client closed: so do we
                sent = sock.send(data)
            except BlockingIOError:
                if not data:
                    continue  # nothing could be read after all
                sent = 0
            except OSError:
                selector.unregister(sock)
                unsent.pop(sock, None)
                sock.close()
                continue
            if sent < len(data):
                unsent[sock] = data[sent:]
                selector.modify(sock, WRITE)  # stop reading until this is out
            elif events & WRITE:
                selector.modify(sock, READ)


if __name__ == "__main__":
    main()
