"""The gRPC lab's peers: grpcio's own servers running the same echo service, one process each;
and the lab's streaming load, grpcio's asyncio client.

``python -m geventsrv.bench.servers.grpcapps {sync,aio} PORT`` serves
``geventsrv.echo.v1.Echo``'s ``Unary`` and ``Bidi`` as geventsrv does: each
message back as the bytes that came (no serializer, so no protobuf work on
either side). ``sync`` is grpcio's thread-pool server (a pool of 10 threads,
its usual size), ``aio`` its asyncio server; both are grpcio's C core under a
Python handler, what a user writing a gRPC echo in Python would run.

``python -m geventsrv.bench.servers.grpcapps load PORT SECONDS STREAMS`` keeps
STREAMS bidirectional streams on one channel, each sending a 64-byte message
and waiting for its echo, for SECONDS; it prints the messages echoed (every
one checked) as JSON, and exits 1 at the first wrong one.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

SERVICE = "geventsrv.echo.v1.Echo"
#: The load's message: an EchoMessage whose ``message`` is 62 bytes, 64 in all.
MESSAGE = b"\x0a\x3e" + b"m" * 62


def same(data: bytes) -> bytes:
    """Messages as bytes, both ways (no protobuf)."""
    return data


def unary(message: bytes, context: Any) -> bytes:
    return message


def bidi(messages: Iterator[bytes], context: Any) -> Iterator[bytes]:
    yield from messages


async def unary_aio(message: bytes, context: Any) -> bytes:
    return message


async def bidi_aio(messages: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for message in messages:
        yield message


def handlers(aio: bool) -> Any:
    import grpc

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary_aio if aio else unary),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi_aio if aio else bidi),
        },
    )


def serve_sync(port: int) -> None:
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    server.add_generic_rpc_handlers((handlers(aio=False),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


async def serve_aio(port: int) -> None:
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers(aio=True),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await server.stop(0)


async def load(port: int, seconds: float, streams: int) -> int:
    """Messages echoed by ``streams`` closed-loop bidirectional streams in ``seconds``."""
    import grpc

    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    echoed = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.stream_stream(
            f"/{SERVICE}/Bidi", request_serializer=same, response_deserializer=same
        )

        async def one() -> None:
            nonlocal echoed
            call = method()
            while loop.time() < stop:
                await call.write(MESSAGE)
                if await call.read() != MESSAGE:
                    raise ValueError("a message came back changed")
                echoed += 1
            await call.done_writing()
            await call.read()  # its end

        await asyncio.gather(*(one() for _ in range(streams)))
    return echoed


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "load":
        try:
            echoed = asyncio.run(load(int(argv[1]), float(argv[2]), int(argv[3])))
        except Exception as exc:  # the bench reports it; the load is over either way
            print(f"load failed: {exc!r}", file=sys.stderr)
            return 1
        print(json.dumps({"messages": echoed}))
        return 0
    if len(argv) != 2 or argv[0] not in ("sync", "aio") or not argv[1].isdigit():
        print("usage: python -m geventsrv.bench.servers.grpcapps {sync,aio} PORT\n"
              "       python -m geventsrv.bench.servers.grpcapps load PORT SECONDS STREAMS",
              file=sys.stderr)  # fmt: skip
        return 2
    if argv[0] == "sync":
        serve_sync(int(argv[1]))
    else:
        asyncio.run(serve_aio(int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
