"""The HTTP lab's peer apps: what a user would run instead of ``--mode http``.

The same two answers as geventsrv's HTTP mode, for uvicorn (ASGI) and for
gunicorn (WSGI, with its gevent worker):

* ``GET /?bytes=N``: N bytes of the same pattern, ``application/octet-stream``
  (the small response: the server's own cost per request, little else);
* any other request: the same reflection document, built with geventsrv's own
  functions from what the server's request object holds, so that every server
  does the same work for it.

:func:`asgi_minimal` answers the second with the reflection a user would write
in a few lines instead (method, target, query, version, headers, client
address, body size, through ``json.dumps``): the floor a full reflection is
measured against.

Run by the lab as ``uvicorn geventsrv.bench.servers.httpapps:asgi`` and
``gunicorn -k gevent geventsrv.bench.servers.httpapps:wsgi``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from geventsrv.http.patterns import PATTERN
from geventsrv.http.reflection import document, encode

HOST = socket.gethostname()


def small(query: str) -> bytes | None:
    """The generated body ``?bytes=N`` asks for, or ``None`` for a reflection."""
    if query.startswith("bytes="):
        return PATTERN[: int(query[6:])]
    return None


def reflection(
    method: str, target: str, version: str, headers: list[tuple[bytes, bytes]], body: bytes,
    peer: str, local: str,
) -> bytes:  # fmt: skip
    """The reflection, from geventsrv's own builder (``request.number`` and the connection's
    are not known to these servers: ``null``; no PROXY header, no TLS)."""
    server = {"host": HOST, "worker": 0, "pid": os.getpid(), "local": local, "connection": None}
    request = method.encode("latin-1"), target.encode("latin-1"), version, headers, body
    return encode(document(None, *request, peer, None, None, server))


async def asgi(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    """The ASGI app (uvicorn)."""
    if scope["type"] != "http":
        return
    body = await _body(receive)
    query = scope["query_string"].decode("latin-1")
    payload = small(query)
    content_type = b"application/octet-stream"
    if payload is None:
        target = scope["raw_path"].decode("latin-1") + (f"?{query}" if query else "")
        headers = list(scope["headers"])
        client, server = scope.get("client") or ("", 0), scope.get("server") or ("", 0)
        payload = reflection(
            scope["method"], target, scope["http_version"], headers, body,
            f"{client[0]}:{client[1]}", f"{server[0]}:{server[1]}",
        )  # fmt: skip
        content_type = b"application/json"
    await _answer(send, payload, content_type)


async def asgi_minimal(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    """The ASGI app (uvicorn) whose reflection is the minimal one."""
    if scope["type"] != "http":
        return
    size = len(await _body(receive))
    query = scope["query_string"].decode("latin-1")
    payload = small(query)
    content_type = b"application/octet-stream"
    if payload is None:
        client = scope.get("client") or ("", 0)
        payload = json.dumps(
            {
                "method": scope["method"],
                "target": scope["raw_path"].decode("latin-1") + (f"?{query}" if query else ""),
                "query": parse_qs(query, keep_blank_values=True),
                "http_version": scope["http_version"],
                "headers": [
                    [n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]
                ],
                "client": f"{client[0]}:{client[1]}",
                "body_size": size,
            }
        ).encode()
        content_type = b"application/json"
    await _answer(send, payload, content_type)


async def _body(receive: Callable[..., Any]) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _answer(send: Callable[..., Any], payload: bytes, content_type: bytes) -> None:
    await send({
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(payload)),
                    (b"cache-control", b"no-store")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI app (gunicorn)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    query = environ.get("QUERY_STRING", "")
    payload = small(query)
    content_type = "application/octet-stream"
    if payload is None:
        target = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        headers = [
            (name[5:].replace("_", "-").title().encode("latin-1"), value.encode("latin-1"))
            for name, value in environ.items()
            if name.startswith("HTTP_")
        ]
        payload = reflection(
            environ["REQUEST_METHOD"], target, environ["SERVER_PROTOCOL"][5:], headers, body,
            f"{environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT')}",
            f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}",
        )  # fmt: skip
        content_type = "application/json"
    start_response(
        "200 OK",
        [("Content-Type", content_type), ("Content-Length", str(len(payload))),
         ("Cache-Control", "no-store")],
    )  # fmt: skip
    return [payload]
