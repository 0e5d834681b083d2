"""gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``): what grpcurl and Postman
ask to list and call the services without their ``.proto`` files.

The answers come from ``grpc_descriptors.binpb`` beside this module: a
protobuf ``FileDescriptorSet`` of ``echo.proto`` and gRPC's ``health.proto``,
made with protoc (``tests/test_http_grpcreflection.py`` remakes it and holds
the shipped file to it). It is read once, indexed by file name and by every
symbol it defines, and its files are sent as they are: no protobuf runtime.

The two versions' messages are the same on the wire; each request on the
bidirectional stream gets one response: the services, a file by name, the
file defining a symbol, or an error (NOT_FOUND) in the response itself, as
the protocol says.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator

from geventsrv.http.grpcwire import NOT_FOUND, UNIMPLEMENTED, field, fields, number_field

#: The services this server answers, as reflection lists them.
SERVICES = (
    "geventsrv.echo.v1.Echo",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
#: ServerReflectionRequest's fields, and ServerReflectionResponse's.
HOST, BY_FILENAME, BY_SYMBOL, BY_EXTENSION, EXTENSION_NUMBERS, LIST_SERVICES = 1, 3, 4, 5, 6, 7
VALID_HOST, ORIGINAL_REQUEST, FILES, NUMBERS, SERVICE_LIST, ERROR = 1, 2, 4, 5, 6, 7


class Descriptors:
    """The shipped descriptors: each file's bytes, by file name and by symbol defined."""

    def __init__(self, files: list[bytes]) -> None:
        self.by_name: dict[str, bytes] = {}
        self.by_symbol: dict[str, bytes] = {}
        for data in files:
            parsed = list(fields(data))
            name = _text(parsed, 1)
            package = _text(parsed, 2)
            self.by_name[name] = data
            for symbol in _symbols(parsed, package):
                self.by_symbol[symbol] = data

    def answer(self, request: bytes) -> bytes:
        """The ServerReflectionResponse to one ServerReflectionRequest."""
        asked = list(fields(request))
        host = _text(asked, HOST)
        reply = field(VALID_HOST, host.encode()) + field(ORIGINAL_REQUEST, request)
        for number, value in asked:
            if not isinstance(value, bytes):
                continue
            text = value.decode("utf-8", "replace")
            if number == LIST_SERVICES:
                listed = b"".join(field(1, field(1, name.encode())) for name in SERVICES)
                return reply + field(SERVICE_LIST, listed)
            if number in (BY_FILENAME, BY_SYMBOL):
                index = self.by_name if number == BY_FILENAME else self.by_symbol
                found = index.get(text)
                if found is None:
                    return reply + _error(NOT_FOUND, f"{text[:100]!r} is not known here")
                return reply + field(FILES, field(1, found))
            if number == EXTENSION_NUMBERS:  # no message here has extensions
                if text not in self.by_symbol:
                    return reply + _error(NOT_FOUND, f"{text[:100]!r} is not known here")
                return reply + field(NUMBERS, field(1, value))
            if number == BY_EXTENSION:
                return reply + _error(NOT_FOUND, "no message here has extensions")
        return reply + _error(UNIMPLEMENTED, "a request this server does not know")


def _error(code: int, message: str) -> bytes:
    return field(ERROR, number_field(1, code) + field(2, message.encode()))


def _text(parsed: list[tuple[int, int | bytes]], number: int) -> str:
    values = [value for key, value in parsed if key == number and isinstance(value, bytes)]
    return values[-1].decode("utf-8", "replace") if values else ""


def _symbols(parsed: list[tuple[int, int | bytes]], package: str) -> Iterator[str]:
    """Every fully qualified name a FileDescriptorProto defines: its messages (nested
    ones too) and enums, its services and their methods."""
    prefix = f"{package}." if package else ""
    for number, value in parsed:
        if not isinstance(value, bytes):
            continue
        if number == 4:  # message_type
            yield from _message_symbols(value, prefix)
        elif number == 5:  # enum_type
            yield prefix + _text(list(fields(value)), 1)
        elif number == 6:  # service
            service = list(fields(value))
            name = prefix + _text(service, 1)
            yield name
            for key, method in service:
                if key == 2 and isinstance(method, bytes):  # method
                    yield f"{name}.{_text(list(fields(method)), 1)}"


def _message_symbols(data: bytes, prefix: str) -> Iterator[str]:
    parsed = list(fields(data))
    name = prefix + _text(parsed, 1)
    yield name
    for number, value in parsed:
        if number == 3 and isinstance(value, bytes):  # nested_type
            yield from _message_symbols(value, f"{name}.")
        elif number == 4 and isinstance(value, bytes):  # enum_type
            yield f"{name}.{_text(list(fields(value)), 1)}"


@functools.cache
def shipped() -> Descriptors:
    """The descriptors shipped beside this module, read and indexed once."""
    data = (importlib.resources.files("geventsrv.http") / "grpc_descriptors.binpb").read_bytes()
    return Descriptors(
        [value for number, value in fields(data) if number == 1 and isinstance(value, bytes)]
    )
