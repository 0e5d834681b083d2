"""The WebSocket lab's peers: an echo on the ``websockets`` library's own server, and one
as an ASGI app for uvicorn (whose ``--ws websockets`` speaks the protocol with that library).

``python -m geventsrv.bench.servers.wsapps --port N`` runs the ``websockets`` server (asyncio,
with uvloop when it is installed, as its users run it for speed); ``uvicorn
geventsrv.bench.servers.wsapps:asgi --ws websockets`` the other. Both echo every message with
its type, as ``--mode http`` does; neither compresses (the load does not ask).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any


async def echo(connection: Any) -> None:
    """The ``websockets`` handler: every message back, text as text, binary as binary."""
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:  # a load generator leaves without a close: not an error here
        return


async def serve(port: int) -> None:
    from websockets.asyncio.server import serve as websockets_serve

    stop = asyncio.get_running_loop().create_future()
    for name in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(name, stop.set_result, None)
    async with websockets_serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        await stop


async def asgi(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    """The ASGI app: accept, then echo each message until the client disconnects."""
    if scope["type"] != "websocket":
        return
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.receive":
            if event.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
            else:
                await send({"type": "websocket.send", "text": event["text"]})
        else:  # websocket.disconnect
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        import uvloop

        uvloop.run(serve(port))
    except ImportError:
        asyncio.run(serve(port))


if __name__ == "__main__":
    main()
