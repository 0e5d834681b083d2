"""The reflection as the server sends it: JSON written from pieces made once.

:mod:`geventsrv.http.reflection` defines the document (the schema, built as a
dictionary: the lab's peers build it so). The server writes the same text
without the dictionary (``tests/test_http_reflector.py`` holds the two to it,
byte for byte): the keys in their order, each value encoded by ``json``'s own
functions, and what repeats encoded once and kept: each header (a client sends
the same few on every request), each method, the empty body, the client
sources of a request without forwarding headers, and everything that belongs
to the connection (its PROXY header, TLS, which server answered), once per
connection. Building the dictionary and encoding it was three quarters of a
reflection's cost.
"""

from __future__ import annotations

import itertools
import json
import time
from json.encoder import encode_basestring_ascii as quoted
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from geventsrv.addresses import format_address
from geventsrv.http.cookies import request_cookies
from geventsrv.http.reflection import (
    ADDRESS_HEADER_LENGTHS,
    SCHEMA,
    authorization,
    client_sources,
    connection_part,
    content_type,
    describe_body,
    encode,
)

if TYPE_CHECKING:
    from geventsrv.http.exchange import Exchange
    from geventsrv.proxyproto import ProxyHeader

Fields = list[tuple[bytes, bytes]]

#: Encoded fields, methods, peers: made once, kept (forgotten all at once past the bound).
KEPT = 4096
_fields: dict[tuple[bytes, bytes], str] = {}
_words: dict[bytes, str] = {}
_no_forwarding: dict[str, str] = {}
_EMPTY_BODY = json.dumps(describe_body(b""))
_last_moment: tuple[float, str] = (-1.0, "")
_NO_CREDENTIALS = ', "cookies": null, "auth": null'
_HEAD = '{"schema": ' + quoted(SCHEMA) + ', "request": {"number": '


class Answerer:
    """Who answers: the part of the reflection that is the same for every request."""

    def __init__(self, host: str, worker: int, pid: int) -> None:
        self.host = host
        self.worker = worker
        self.pid = pid
        #: How many requests this process has reflected: each one's ``served``.
        self.served = itertools.count(1)

    def reflect(
        self, exchange: Exchange, body: bytes, arrived: tuple[str, int] | None = None
    ) -> bytes:
        """The reflection of one exchange's request, whose body was ``body``, encoded.

        What belongs to the connection (its PROXY header, TLS, the server's address) is
        encoded once per connection, kept in ``conn.memo``, and follows the request's
        part, which the schema puts first. ``arrived``: the coding ``body`` came in and its
        size then, when ``body`` is it decoded."""
        conn, request = exchange.conn, exchange.request
        memo = conn.memo
        if memo is None:
            memo = conn.memo = {}
        tail = memo.get("reflection")
        if not isinstance(tail, bytes):
            server = {
                "host": self.host,
                "worker": self.worker,
                "pid": self.pid,
                "local": format_address(*conn.sock.getsockname()[:2]),
                "connection": conn.number,
            }
            tail = memo["reflection"] = (
                b", " + encode(connection_part(conn.proxy, conn.tls, server))[1:]
            )
        head = request_json(
            exchange.number, request.method, request.target, request.version,
            request.headers, body, conn.peer, conn.proxy, request.stream_id, request.pseudo,
            request.trailers, arrived, next(self.served), int(time.time() * 1000) / 1000,
        )  # fmt: skip
        return head.encode() + tail


def _field(pair: tuple[bytes, bytes]) -> str:
    encoded = _fields.get(pair)
    if encoded is None:
        if len(_fields) >= KEPT:
            _fields.clear()
        encoded = _fields[pair] = (
            "[" + quoted(pair[0].decode("latin-1")) + ", " + quoted(pair[1].decode("latin-1")) + "]"
        )
    return encoded


def _fields_list(fields: Fields | None) -> str:
    if fields is None:
        return "null"
    return "[" + ", ".join([_field(pair) for pair in fields]) + "]"


def _word(value: bytes) -> str:
    encoded = _words.get(value)
    if encoded is None:
        if len(_words) >= KEPT:
            _words.clear()
        encoded = _words[value] = quoted(value.decode("latin-1"))
    return encoded


def _client(peer: str, proxy: ProxyHeader | None, headers: Fields) -> str:
    if proxy is None and not any(len(name) in ADDRESS_HEADER_LENGTHS for name, _ in headers):
        encoded = _no_forwarding.get(peer)
        if encoded is None:
            if len(_no_forwarding) >= KEPT:
                _no_forwarding.clear()
            encoded = _no_forwarding[peer] = json.dumps(client_sources(peer, None, []))
        return encoded
    shown = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
    return json.dumps(client_sources(peer, proxy, shown))


def _moment(seconds: float) -> str:
    """``seconds`` as JSON writes it, written once per value (a float's ``repr`` is slow, and
    requests answered in the same millisecond share it)."""
    global _last_moment
    if _last_moment[0] != seconds:
        _last_moment = (seconds, repr(seconds))
    return _last_moment[1]


def _credentials(headers: Fields) -> str:
    """The ``cookies`` and ``auth`` keys (``null`` both, at the cost of a glance, when
    neither header came: a name is compared only when its length could match)."""
    cookie = auth = False
    for name, _ in headers:
        size = len(name)
        if size == 6:  # Cookie, or Accept (every browser's): told apart by their second letter
            cookie = cookie or (name[1] in (111, 79) and name.lower() == b"cookie")
        elif size == 13:
            auth = auth or name.lower() == b"authorization"
    if not (cookie or auth):
        return _NO_CREDENTIALS
    return (
        ', "cookies": ' + (json.dumps(request_cookies(headers)) if cookie else "null")
        + ', "auth": ' + (json.dumps(authorization(headers)) if auth else "null")
    )  # fmt: skip


def request_json(
    number: int | None,
    method: bytes,
    target: bytes,
    version: str,
    headers: Fields,
    body: bytes,
    peer: str,
    proxy: ProxyHeader | None,
    stream: int | None = None,
    pseudo: Fields | None = None,
    trailers: Fields | None = None,
    arrived: tuple[str, int] | None = None,
    served: int | None = None,
    answered: float | None = None,
) -> str:
    """The document's opening up to its ``client`` key included, without the closing brace:
    the same text as ``request_part(...)`` (with ``stream``, ``pseudo_headers`` and
    ``trailers`` set) encoded."""
    text = target.decode("latin-1")
    path, _, query = text.partition("?")
    query = query.partition("#")[0]
    return "".join((
        _HEAD, "null" if number is None else str(number),
        ', "served": ', "null" if served is None else str(served),
        ', "answered": ', "null" if answered is None else _moment(answered),
        ', "method": ', _word(method),
        ', "target": ', quoted(text),
        ', "path": ', quoted(path.partition("#")[0]),
        ', "query": ', json.dumps(parse_qs(query, keep_blank_values=True)) if query else "{}",
        ', "http_version": ', quoted(version),
        ', "stream": ', "null" if stream is None else str(stream),
        ', "pseudo_headers": ', _fields_list(pseudo),
        ', "headers": ', _fields_list(headers),
        ', "trailers": ', _fields_list(trailers or []),
        _credentials(headers),
        '}, "body": ', _EMPTY_BODY if not body and arrived is None else json.dumps(
            describe_body(body, content_type(headers) if body else None, arrived)
        ),
        ', "client": ', _client(peer, proxy, headers),
    ))  # fmt: skip
