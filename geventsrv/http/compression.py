"""Content codings (RFC 9110 8.4): bodies compressed on request, and request bodies decoded.

``gzip`` and ``deflate`` come with Python; ``br`` with the ``brotli`` package and
``zstd`` with ``zstandard`` (the ``compression`` extra), offered only when
installed. A response is compressed as it is sent, piece by piece, so a large
generated body is never held whole. A request body that arrives with
``Content-Encoding`` is decoded for the reflection with a bound on what it
decodes to, so a decompression bomb costs only its own request (413).
"""

from __future__ import annotations

import functools
import importlib
import io
import zlib
from collections.abc import Callable
from typing import Any, Protocol

#: The codings offered, best first: the order a tie between accepted codings is settled in.
PREFERENCE = ("br", "zstd", "gzip", "deflate")
ON = ("1", "true", "yes", "auto")
OFF = ("0", "false", "no", "identity")
#: How hard the server compresses: fast, since the point is the coding, not the ratio.
LEVEL = 6


class TooLarge(Exception):
    """A body decodes to more than its bound."""


class BadEncoding(Exception):
    """A body that its ``Content-Encoding`` does not decode; ``str()`` says why."""


class Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


@functools.cache
def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def available() -> list[str]:
    """The codings this server can send and decode, best first."""
    have = {"gzip", "deflate"}
    if _module("brotli") is not None:
        have.add("br")
    if _module("zstandard") is not None:
        have.add("zstd")
    return [coding for coding in PREFERENCE if coding in have]


def asked(text: str) -> str | None:
    """The ``compress`` control's value: ``"auto"``, ``"identity"``, an available coding, or
    ``None`` when it is none of them."""
    word = text.strip().lower()
    if word in ON:
        return "auto"
    if word in OFF:
        return "identity"
    return word if word in available() else None


def negotiate(accept_encoding: bytes | None) -> str | None:
    """The best available coding ``Accept-Encoding`` accepts (highest q, then the server's
    preference); ``None`` when it accepts none, or did not come."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.decode("latin-1").lower().split(","):
        name, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if name:
            weights[name] = weight
    star = weights.get("*", 0.0)
    best, best_weight = None, 0.0
    for coding in available():
        weight = weights.get(coding, weights.get("x-gzip", star) if coding == "gzip" else star)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best


def compressor(coding: str) -> Compressor:
    """A streaming compressor for ``coding`` (one of :func:`available`)."""
    if coding == "gzip":
        return zlib.compressobj(LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    if coding == "deflate":  # the zlib format, which is what "deflate" means in HTTP
        return zlib.compressobj(LEVEL, zlib.DEFLATED, zlib.MAX_WBITS)
    if coding == "br":
        return _BrotliStream(_module("brotli").Compressor(quality=4))
    return _module("zstandard").ZstdCompressor(level=3).compressobj()  # type: ignore[no-any-return]


class _BrotliStream:
    """brotli's compressor under the names zlib's has."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def compress(self, data: bytes, /) -> bytes:
        return self.inner.process(data)  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        return self.inner.finish()  # type: ignore[no-any-return]


def compress(coding: str, data: bytes | memoryview) -> bytes:
    """``data`` compressed whole with ``coding``."""
    engine = compressor(coding)
    return engine.compress(bytes(data)) + engine.flush()


def decoder(coding: str) -> Callable[[bytes, int], bytes] | None:
    """The function that decodes a whole body of ``coding`` to at most ``limit`` bytes, or
    ``None`` when the server does not know the coding."""
    coding = coding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return functools.partial(_zlib, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return functools.partial(_zlib, zlib.MAX_WBITS)
    if coding == "br" and _module("brotli") is not None:
        return _brotli
    if coding == "zstd" and _module("zstandard") is not None:
        return _zstd
    return None


def decode(codings: bytes, body: bytes, limit: int) -> bytes:
    """``body`` decoded through each of ``Content-Encoding``'s codings (last applied, first
    undone). Raises :class:`TooLarge` past ``limit`` bytes and :class:`BadEncoding` on a
    coding the server does not know or a body that is not in it."""
    for coding in reversed(codings.decode("latin-1").split(",")):
        if coding.strip().lower() in ("", "identity"):
            continue
        undo = decoder(coding)
        if undo is None:
            raise BadEncoding(f"unknown content coding {coding.strip()[:40]!r}")
        try:
            body = undo(body, limit)
        except TooLarge:
            raise
        except Exception as exc:  # zlib.error, brotli.error, zstandard.ZstdError
            raise BadEncoding(f"the body is not valid {coding.strip()}: {exc}") from None
    return body


def _zlib(wbits: int, data: bytes, limit: int) -> bytes:
    engine = zlib.decompressobj(wbits)
    try:
        out = engine.decompress(data, limit + 1)
    except zlib.error:
        if wbits != zlib.MAX_WBITS:
            raise
        return _zlib(-zlib.MAX_WBITS, data, limit)  # "deflate" sent raw, as some clients do
    if len(out) > limit:
        raise TooLarge
    if not engine.eof:
        raise zlib.error("the stream is incomplete")
    return out


def _brotli(data: bytes, limit: int) -> bytes:
    engine = _module("brotli").Decompressor()
    out = engine.process(data, output_buffer_limit=limit + 1)
    if len(out) > limit:  # the buffer stopped growing past the bound: more was to come
        raise TooLarge
    if not engine.is_finished():
        raise ValueError("the stream is incomplete")
    return out  # type: ignore[no-any-return]


def _zstd(data: bytes, limit: int) -> bytes:
    reader = _module("zstandard").ZstdDecompressor().stream_reader(io.BytesIO(data))
    out = reader.read(limit + 1)
    if len(out) > limit:
        raise TooLarge
    return out  # type: ignore[no-any-return]
