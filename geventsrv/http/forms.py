"""Form bodies, parsed for the reflection: what a front let through of a form post.

``application/x-www-form-urlencoded`` becomes its fields (name -> values);
``multipart/form-data`` its fields and, for each file, its field name, file
name, type, size and SHA-256 (never its bytes: the reflection says what came,
and a file may be binary and large). Only bodies already held for the
reflection are parsed, so ``--http-max-body`` bounds them; at most
:data:`MAX_PARTS` fields are shown. Lenient, as the rest of the reflection:
what does not parse is left out, never refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from urllib.parse import parse_qsl

MAX_PARTS = 1000
URLENCODED = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"


def media_type(content_type: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """``Content-Type``'s media type (lower-cased) and parameters (names lower-cased)."""
    kind, *params = content_type.split(b";")
    parsed = {}
    for param in params:
        name, _, value = param.strip().partition(b"=")
        parsed[name.strip().lower()] = value.strip().strip(b'"')
    return kind.strip().lower(), parsed


def parse_form(content_type: bytes | None, body: bytes) -> dict[str, object] | None:
    """``{"fields": {name: [values]}, "files": [...]}`` for a form body, else ``None``."""
    if not content_type or not body:
        return None
    kind, params = media_type(content_type)
    if kind == URLENCODED:
        fields: dict[str, list[str]] = {}
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        for name, value in pairs[:MAX_PARTS]:
            fields.setdefault(_text(name.encode("latin-1")), []).append(
                _text(value.encode("latin-1"))
            )
        return {"fields": fields, "files": []}
    if kind == MULTIPART and params.get(b"boundary"):
        return parse_multipart(body, params[b"boundary"])
    return None


def parse_multipart(body: bytes, boundary: bytes) -> dict[str, object]:
    """A ``multipart/form-data`` body's fields and files (RFC 7578)."""
    fields: dict[str, list[str]] = {}
    files: list[dict[str, object]] = []
    for disposition, part_type, content in parts(body, boundary):
        field = _text(disposition[b"name"])
        if b"filename" in disposition:
            files.append({
                "field": field,
                "filename": _text(disposition[b"filename"]),
                "type": part_type.decode("latin-1") if part_type else None,
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            })  # fmt: skip
        else:
            fields.setdefault(field, []).append(_text(content))
    return {"fields": fields, "files": files}


def multipart_files(
    content_type: bytes | None, body: bytes
) -> Iterator[tuple[str, bytes | None, bytes]]:
    """Each file of a ``multipart/form-data`` body: its field name, type and content."""
    if not content_type:
        return
    kind, params = media_type(content_type)
    if kind != MULTIPART or not params.get(b"boundary"):
        return
    for disposition, part_type, content in parts(body, params[b"boundary"]):
        if b"filename" in disposition:
            yield _text(disposition[b"name"]), part_type, content


def parts(body: bytes, boundary: bytes) -> Iterator[tuple[dict[bytes, bytes], bytes | None, bytes]]:
    """Each named part of a multipart body: its ``Content-Disposition`` parameters, its
    ``Content-Type`` and its content; at most :data:`MAX_PARTS`."""
    for part in body.split(b"--" + boundary)[1 : MAX_PARTS + 1]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        disposition: dict[bytes, bytes] = {}
        part_type = None
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-disposition":
                disposition = media_type(value)[1]
            elif name == b"content-type":
                part_type = value.strip()
        if b"name" in disposition:
            yield disposition, part_type, content


def _text(raw: bytes) -> str:
    """UTF-8 where it is (browsers send forms so), else Latin-1: never refused."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
