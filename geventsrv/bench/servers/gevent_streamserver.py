"""gevent's own ``StreamServer``: the library's accept loop, a greenlet per connection.

What gevent offers out of the box, without monkey-patching: the handler gets a
gevent socket and runs in its own greenlet.
"""

from __future__ import annotations

import gevent
from gevent import socket
from gevent.server import StreamServer

from geventsrv.bench.servers._common import announce, parse_address


def handle(conn: socket.socket, _address: object) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while data := conn.recv(65536):
            conn.sendall(data)
    except OSError:
        pass


def main() -> None:
    server = StreamServer(parse_address(__doc__), handle, backlog=4096)
    server.start()
    announce(server.socket.getsockname())
    gevent.signal_handler(15, server.stop)
    gevent.signal_handler(2, server.stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
