"""asyncio streams: ``start_server`` with a reader and a writer per connection.

The high-level asyncio API most tutorials teach: a coroutine per connection,
``await reader.read()``, ``writer.write()`` then ``await writer.drain()``.
"""

from __future__ import annotations

import asyncio
import socket

from geventsrv.bench.servers._common import announce, exit_on_sigterm, parse_address


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()  # wait while the client is slow to read
    except OSError:
        pass
    finally:
        writer.close()


async def serve() -> None:
    host, port = parse_address(__doc__)
    server = await asyncio.start_server(handle, host, port, backlog=4096)
    for sock in server.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by clients
    announce(server.sockets[0].getsockname())
    await server.serve_forever()


def main() -> None:
    exit_on_sigterm()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
