"""The reflection: one JSON document saying what a request brought, whatever its version.

The schema, version :data:`SCHEMA` (every key always present; ``null`` where
it does not apply): ``schema``; ``request`` {``number`` (on this connection,
from 1), ``served`` (among every request this process has reflected, from 1),
``answered`` (when, in seconds since the epoch), ``method``, ``target`` (raw),
``path``, ``query`` (name -> list of values), ``http_version``, ``stream``
(HTTP/2's and HTTP/3's stream), ``pseudo_headers`` (theirs, as [name, value] pairs in
their order), ``headers`` ([name, value] pairs in their order and case,
duplicates kept), ``trailers`` (the same, after the body), ``cookies`` (name
-> value, from ``Cookie``), ``auth`` (``scheme``, the Basic ``user``, a bearer
JWT's ``header`` and ``claims``, decoded and not verified: see
:mod:`geventsrv.http.auth`)}; ``body`` {``size``, ``text``
(when UTF-8) or ``base64``, ``json`` (when it parses as JSON), ``encoding``
(the ``coding`` it arrived in and its ``size`` then; the other keys describe it
decoded), ``form`` (``fields`` and ``files`` of a form post: see
:mod:`geventsrv.http.forms`)}; ``client`` {``peer``,
``proxy`` (the PROXY header's source), ``x_forwarded_for`` (list),
``forwarded`` (list of {for, by, proto, host}), ``x_real_ip``}; ``proxy`` (the
PROXY header, as the info mode shows it); ``tls`` (``quic``: HTTP/3's version and
connection ids); ``server`` {``host``,
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
from geventsrv.http.auth import describe as describe_auth
from geventsrv.http.cookies import request_cookies
from geventsrv.http.forms import parse_form
from geventsrv.modes.info import describe_proxy

if TYPE_CHECKING:
    from geventsrv.proxyproto import ProxyHeader

#: 1.1 added ``request.stream``, ``request.pseudo_headers`` and ``request.trailers``; 1.2
#: ``request.served``, ``request.answered``, ``request.cookies``, ``request.auth``,
#: ``body.encoding`` and ``body.form``; 1.3 ``tls.quic`` (and ``"3"``, HTTP/3's version).
SCHEMA = "geventsrv.http/1.4"
#: The lengths of the headers that name a client address (``X-Forwarded-For``,
#: ``Forwarded``, ``X-Real-IP``): any other header is passed over without a compare.
ADDRESS_HEADER_LENGTHS = frozenset((15, 9))
#: One encoder for every document (``json.dumps`` with separators makes one per call).
ENCODER = json.JSONEncoder(separators=(", ", ": "))


def request_part(
    number: int | None,
    method: bytes,
    target: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    peer: str,
    proxy: ProxyHeader | None,
    stream: int | None = None,
    pseudo: list[tuple[bytes, bytes]] | None = None,
    trailers: list[tuple[bytes, bytes]] | None = None,
    arrived: tuple[str, int] | None = None,
    served: int | None = None,
    answered: float | None = None,
) -> dict[str, object]:
    """The reflection's keys that each request has its own: ``schema``, ``request``,
    ``body``, ``client`` (in the schema's order: they come first). ``arrived``: the
    coding the body came in and its size then, when ``body`` is it decoded; ``served``
    and ``answered``: the request's place among all the process reflected, and when."""
    text = target.decode("latin-1")
    path, _, query = text.partition("?")
    shown = _pairs(headers)
    return {
        "schema": SCHEMA,
        "request": {
            "number": number,
            "served": served,
            "answered": answered,
            "method": method.decode("latin-1"),
            "target": text,
            "path": path.partition("#")[0],
            "query": parse_qs(query.partition("#")[0], keep_blank_values=True) if query else {},
            "http_version": version,
            "stream": stream,
            "pseudo_headers": None if pseudo is None else _pairs(pseudo),
            "headers": shown,
            "trailers": _pairs(trailers or []),
            "cookies": request_cookies(headers),
            "auth": authorization(headers),
        },
        "body": describe_body(body, content_type(headers) if body else None, arrived),
        "client": client_sources(peer, proxy, shown),
    }


def _pairs(fields: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in fields]


def connection_part(
    proxy: ProxyHeader | None, tls: dict[str, object] | None, server: dict[str, object]
) -> dict[str, object]:
    """The reflection's keys that every request of a connection shares: ``proxy``,
    ``tls`` (with ``quic``: HTTP/3's QUIC details, ``null`` over TCP), ``server`` (last in
    the schema's order)."""
    if tls is not None and "quic" not in tls:
        tls = {**tls, "quic": None}
    return {"proxy": describe_proxy(proxy), "tls": tls, "server": server}


def document(
    number: int | None,
    method: bytes,
    target: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    peer: str,
    proxy: ProxyHeader | None,
    tls: dict[str, object] | None,
    server: dict[str, object],
) -> dict[str, object]:
    """The whole reflection document (the schema above), from what the request brought
    and which server answered: what the lab's peers build, with the server's own parts."""
    return request_part(number, method, target, version, headers, body, peer, proxy) | (
        connection_part(proxy, tls, server)
    )


def encode(reflection: dict[str, object]) -> bytes:
    """A document as the mode sends it: JSON on one line, ending in a newline."""
    return ENCODER.encode(reflection).encode() + b"\n"


def authorization(headers: list[tuple[bytes, bytes]]) -> dict[str, object] | None:
    """What ``Authorization`` carried (the last one), or ``None`` when none came."""
    value = None
    for name, text in headers:
        if len(name) == 13 and name.lower() == b"authorization":
            value = text
    return None if value is None else describe_auth(value)


def content_type(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The request's ``Content-Type`` (the last one), or ``None``."""
    found = None
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            found = value
    return found


def describe_body(
    body: bytes, kind: bytes | None = None, arrived: tuple[str, int] | None = None
) -> dict[str, object]:
    """The body as the reflection shows it: its size, text or base64, JSON when it parses,
    the coding it ``arrived`` in, and its fields when its ``Content-Type`` (``kind``) is a
    form's."""
    described: dict[str, object] = {
        "size": len(body), "text": None, "base64": None, "json": None,
        "encoding": None if arrived is None else {"coding": arrived[0], "size": arrived[1]},
        "form": parse_form(kind, body),
    }  # fmt: skip
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


def client_sources(
    peer: str, proxy: ProxyHeader | None, headers: list[list[str]]
) -> dict[str, object]:
    """Every source of the client's address, side by side; none is chosen for the reader:
    the socket's ``peer``, the source of the ``proxy`` header, and the ``headers``'."""

    forwarded_for: list[str] = []
    forwarded: list[dict[str, str]] = []
    real_ip = None
    for key, value in headers:  # one pass, names compared only when they could match
        if len(key) not in ADDRESS_HEADER_LENGTHS:
            continue
        name = key.lower()
        if name == "x-forwarded-for":
            forwarded_for += (part.strip() for part in value.split(","))
        elif name == "forwarded":
            forwarded += parse_forwarded(value)
        elif name == "x-real-ip":
            real_ip = value.strip()
    source = proxy.source if proxy is not None else None
    return {
        "peer": peer,
        "proxy": format_address(*source) if source is not None else None,
        "x_forwarded_for": [part for part in forwarded_for if part] or None,
        "forwarded": forwarded or None,
        "x_real_ip": real_ip,
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
