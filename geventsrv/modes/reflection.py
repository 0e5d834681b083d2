"""The http mode's reflection: one JSON document saying what a request brought.

The schema, version :data:`SCHEMA` (every key always present; ``null`` where
it does not apply): ``schema``; ``request`` {``number`` (on this connection,
from 1), ``method``, ``target`` (raw), ``path``, ``query`` (name -> list of
values), ``http_version``, ``headers`` ([name, value] pairs in their order and
case, duplicates kept)}; ``body`` {``size``, ``text`` (when UTF-8) or
``base64``, ``json`` (when it parses as JSON)}; ``client`` {``peer``,
``proxy`` (the PROXY header's source), ``x_forwarded_for`` (list),
``forwarded`` (list of {for, by, proto, host}), ``x_real_ip``}; ``proxy`` (the
PROXY header, as the info mode shows it); ``tls``; ``server`` {``host``,
``worker``, ``pid``, ``local``, ``connection``}.

Nothing from the server's environment or file system is ever reflected:
only what the client sent, what the handshake settled, and which server
answered.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from geventsrv.addresses import format_address
from geventsrv.modes.info import describe_proxy

if TYPE_CHECKING:
    from geventsrv.connection import Connection
    from geventsrv.modes.httpwire import Request

SCHEMA = "geventsrv.http/1"


class Answerer:
    """Who answers: the part of the reflection that is the same for every request."""

    def __init__(self, host: str, worker: int, pid: int) -> None:
        self.host = host
        self.worker = worker
        self.pid = pid

    def reflect(
        self, conn: Connection, request: Request, body: bytes, number: int
    ) -> dict[str, object]:
        """The reflection of one request."""
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")] for name, value in request.headers
        ]
        return {
            "schema": SCHEMA,
            "request": {
                "number": number,
                "method": request.method.decode("latin-1"),
                "target": target,
                "path": path.partition("#")[0],
                "query": parse_qs(query.partition("#")[0], keep_blank_values=True),
                "http_version": request.version,
                "headers": headers,
            },
            "body": describe_body(body),
            "client": client_sources(conn, headers),
            "proxy": describe_proxy(conn.proxy),
            "tls": conn.tls,
            "server": {
                "host": self.host,
                "worker": self.worker,
                "pid": self.pid,
                "local": format_address(*conn.sock.getsockname()[:2]),
                "connection": conn.number,
            },
        }


def encode(document: dict[str, object]) -> bytes:
    """A document as the mode sends it: JSON on one line, ending in a newline."""
    return json.dumps(document, separators=(", ", ": ")).encode() + b"\n"


def describe_body(body: bytes) -> dict[str, object]:
    """The body as the reflection shows it: its size, text or base64, and JSON when it parses."""
    described: dict[str, object] = {"size": len(body), "text": None, "base64": None, "json": None}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        described["base64"] = base64.b64encode(body).decode("ascii")
        return described
    described["text"] = text
    if text.strip():
        with contextlib.suppress(ValueError, RecursionError):  # not JSON, or nested too deep
            described["json"] = json.loads(text)
    return described


def client_sources(conn: Connection, headers: list[list[str]]) -> dict[str, object]:
    """Every source of the client's address, side by side; none is chosen for the reader."""

    def values(name: str) -> list[str]:
        return [value for key, value in headers if key.lower() == name]

    forwarded_for = [
        part.strip() for value in values("x-forwarded-for") for part in value.split(",")
    ]
    forwarded = [element for value in values("forwarded") for element in parse_forwarded(value)]
    real_ip = values("x-real-ip")
    proxy = conn.proxy.source if conn.proxy is not None else None
    return {
        "peer": conn.peer,
        "proxy": format_address(*proxy) if proxy is not None else None,
        "x_forwarded_for": [part for part in forwarded_for if part] or None,
        "forwarded": forwarded or None,
        "x_real_ip": real_ip[-1].strip() if real_ip else None,
    }


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: ``for=1.2.3.4;proto=https, for="[2001:db8::1]"`` -> elements.

    Lenient: a pair without ``=`` is skipped rather than refused, since the
    reflection shows what arrived, it does not judge it.
    """
    elements = []
    for element in value.split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, text = pair.strip().partition("=")
            if sep and name:
                pairs[name.strip().lower()] = text.strip().strip('"')
        if pairs:
            elements.append(pairs)
    return elements
