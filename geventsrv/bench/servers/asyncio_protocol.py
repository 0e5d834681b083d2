"""asyncio protocols: callbacks on the event loop, no coroutine per connection.

The low-level asyncio API: ``data_received`` is called with each chunk and
writes it straight back. ``--uvloop`` runs the same code on uvloop's libuv
event loop, where installed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from geventsrv.bench.servers._common import announce, exit_on_sigterm, parse_address


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the same methods but are not subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # asyncio sets TCP_NODELAY on its sockets


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, backlog=4096)
    announce(server.sockets[0].getsockname())
    await server.serve_forever()


def main() -> None:
    exit_on_sigterm()
    use_uvloop = "--uvloop" in sys.argv
    if use_uvloop:
        sys.argv.remove("--uvloop")
    host, port = parse_address(__doc__)
    if use_uvloop:
        import uvloop

        uvloop.run(serve(host, port))
    else:
        asyncio.run(serve(host, port))


if __name__ == "__main__":
    main()
