"""The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's specification defines it.

A proxy or load balancer in front of a server opens each connection with one
header that says who the real client is; everything after it is the client's
own bytes. This module reads, parses and writes those headers and nothing
else: no sockets of its own, no gevent, so it is easy to test to exhaustion.

Reading is exact: :func:`read_header` takes from the socket the header's
bytes and not one more (it peeks first), so whatever follows, a TLS
ClientHello or the first bytes to echo, is left for the next reader exactly as
the client sent it.

Strict and bounded, as the specification asks of a receiver: a version 1 line
is at most :data:`V1_MAX_LENGTH` bytes, a version 2 header's length must hold
its address block and its TLVs exactly, and anything else raises
:class:`ProxyProtocolError` with a short reason. Families the server cannot
use (``UNKNOWN``, ``AF_UNSPEC``, ``AF_UNIX``) and version 2's ``LOCAL``
command leave :attr:`ProxyHeader.source` as ``None``: the connection's own
peer address stands.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

#: Longest version 1 header, CRLF included (the specification's own bound).
V1_MAX_LENGTH = 107
V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16

#: ``--proxy-protocol`` choices, and the header versions each accepts.
ACCEPTED_VERSIONS = {"v1": (1,), "v2": (2,), "any": (1, 2)}

# Version 2 TLV types (section 2.2).
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_TYPE_NETNS = 0x30
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
# family nibble -> (name, address block length); protocol nibble -> name.
_V2_FAMILIES = {0x0: ("UNSPEC", 0), 0x1: ("INET", 12), 0x2: ("INET6", 36), 0x3: ("UNIX", 216)}
_V2_PROTOCOLS = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}
_SSL_TEXT_SUBTYPES = {
    PP2_SUBTYPE_SSL_VERSION: "version",
    PP2_SUBTYPE_SSL_CN: "cn",
    PP2_SUBTYPE_SSL_CIPHER: "cipher",
    PP2_SUBTYPE_SSL_SIG_ALG: "sig_alg",
    PP2_SUBTYPE_SSL_KEY_ALG: "key_alg",
}

#: A socket address as the header carries it: ``(host, port)``.
HostPort = tuple[str, int]


class ProxyProtocolError(ValueError):
    """Not a valid PROXY header; ``str()`` says why, in a few words."""


class ClosedBeforeHeader(ProxyProtocolError):
    """The peer closed before its header was complete (a balancer's TCP check, often)."""


@dataclass(frozen=True)
class ProxyHeader:
    """One parsed header.

    ``transport`` is version 1's protocol word (``TCP4``, ``TCP6``,
    ``UNKNOWN``) or version 2's family and protocol (``INET/STREAM``,
    ``INET6/DGRAM``, ``UNSPEC/UNSPEC``...). ``tlvs`` holds version 2's
    type-length-value fields as received, in order; :meth:`tlv_fields` decodes
    the ones a tester cares about.
    """

    version: int
    command: str
    transport: str
    source: HostPort | None = None
    destination: HostPort | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv_fields(self) -> dict[str, object]:
        """The known TLVs, decoded: alpn, authority, unique_id (hex), ssl {...}, netns.

        Unknown types are left out; a field that does not decode as its type
        should (text that is not UTF-8) is shown with replacement characters
        rather than refused, since the header as a whole was well formed.
        """
        fields: dict[str, object] = {}
        for kind, value in self.tlvs:
            if kind == PP2_TYPE_ALPN:
                fields["alpn"] = value.decode("ascii", "replace")
            elif kind == PP2_TYPE_AUTHORITY:
                fields["authority"] = value.decode("utf-8", "replace")
            elif kind == PP2_TYPE_UNIQUE_ID:
                fields["unique_id"] = value.hex()
            elif kind == PP2_TYPE_NETNS:
                fields["netns"] = value.decode("ascii", "replace")
            elif kind == PP2_TYPE_SSL and len(value) >= 5:
                fields["ssl"] = _ssl_fields(value)
        return fields


def _ssl_fields(value: bytes) -> dict[str, object]:
    client, verify = value[0], struct.unpack_from("!I", value, 1)[0]
    presented = bool(client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS))
    ssl: dict[str, object] = {
        "client_ssl": bool(client & PP2_CLIENT_SSL),
        "client_cert": presented,
        # verify is 0 when the certificate the client presented verified.
        "client_cert_verified": presented and verify == 0,
    }
    for kind, sub in _split_tlvs(value[5:]):
        name = _SSL_TEXT_SUBTYPES.get(kind)
        if name is not None:
            ssl[name] = sub.decode("utf-8", "replace")
    return ssl


def _split_tlvs(block: bytes) -> list[tuple[int, bytes]]:
    tlvs = []
    at = 0
    while at < len(block):
        if len(block) - at < 3:
            raise ProxyProtocolError("truncated TLV")
        kind, length = struct.unpack_from("!BH", block, at)
        at += 3
        if length > len(block) - at:
            raise ProxyProtocolError("TLV longer than the header")
        tlvs.append((kind, bytes(block[at : at + length])))
        at += length
    return tlvs


# -- finding the end of a header ---------------------------------------------


def header_length(data: bytes, versions: tuple[int, ...] = (1, 2)) -> int | None:
    """How long the header at the start of ``data`` is, or ``None`` if more is needed.

    Raises :class:`ProxyProtocolError` as soon as ``data`` cannot be the start
    of a header of one of ``versions`` (so garbage is refused at its first
    wrong byte, not after a timeout).
    """
    if 2 in versions and data[:1] == V2_SIGNATURE[:1]:
        if not V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]):
            raise ProxyProtocolError("bad version 2 signature")
        if len(data) < V2_FIXED_LENGTH:
            return None
        length: int = struct.unpack_from("!H", data, 14)[0]
        return V2_FIXED_LENGTH + length
    if 1 in versions:
        if not data.startswith(V1_PREFIX[: len(data)]):
            raise ProxyProtocolError("no PROXY header")
        end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
        if end >= 0:
            return end + 2
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"version 1 header longer than {V1_MAX_LENGTH} bytes")
        return None
    if not data:
        return None
    raise ProxyProtocolError("no PROXY header")


# -- parsing -----------------------------------------------------------------


def parse(header: bytes, versions: tuple[int, ...] = (1, 2)) -> ProxyHeader:
    """Parse one complete header (exactly :func:`header_length` bytes)."""
    if header_length(header, versions) != len(header):
        raise ProxyProtocolError("incomplete header")
    if header.startswith(V2_SIGNATURE):
        return _parse_v2(header)
    return _parse_v1(header)


def _parse_v1(header: bytes) -> ProxyHeader:
    try:
        line = header[len(V1_PREFIX) : -2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("version 1 header is not ASCII") from None
    words = line.split(" ")
    if words[0] == "UNKNOWN":
        # The specification: anything may follow UNKNOWN, and is ignored.
        return ProxyHeader(1, "PROXY", "UNKNOWN")
    if len(words) != 5 or words[0] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("version 1 header is not TCP4, TCP6 or UNKNOWN")
    transport, source, destination, source_port, destination_port = words
    family = socket.AF_INET if transport == "TCP4" else socket.AF_INET6
    return ProxyHeader(
        1,
        "PROXY",
        transport,
        (_v1_address(source, family), _v1_port(source_port)),
        (_v1_address(destination, family), _v1_port(destination_port)),
    )


def _v1_address(text: str, family: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"bad address {text[:40]!r}") from None
    if address.version != (4 if family == socket.AF_INET else 6):
        raise ProxyProtocolError(f"address {text!r} does not match the protocol")
    return str(address)


def _v1_port(text: str) -> int:
    # Decimal digits only, no sign, no spaces, no leading zeros: int() alone is laxer.
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"bad port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"port {port} out of range")
    return port


def _parse_v2(header: bytes) -> ProxyHeader:
    version, command = header[12] >> 4, header[12] & 0x0F
    if version != 2:
        raise ProxyProtocolError(f"version 2 header says version {version}")
    if command not in _V2_COMMANDS:
        raise ProxyProtocolError(f"unknown version 2 command {command}")
    family, protocol = header[13] >> 4, header[13] & 0x0F
    if family not in _V2_FAMILIES or protocol not in _V2_PROTOCOLS:
        raise ProxyProtocolError(f"unknown address family/protocol 0x{header[13]:02x}")
    family_name, address_length = _V2_FAMILIES[family]
    body = header[V2_FIXED_LENGTH:]
    if len(body) < address_length:
        raise ProxyProtocolError("version 2 header shorter than its addresses")
    tlvs = tuple(_split_tlvs(body[address_length:]))
    transport = f"{family_name}/{_V2_PROTOCOLS[protocol]}"
    source = destination = None
    if family_name == "INET":
        a, b, sport, dport = struct.unpack_from("!4s4sHH", body)
        source = (str(ipaddress.IPv4Address(a)), sport)
        destination = (str(ipaddress.IPv4Address(b)), dport)
    elif family_name == "INET6":
        a, b, sport, dport = struct.unpack_from("!16s16sHH", body)
        source = (str(ipaddress.IPv6Address(a)), sport)
        destination = (str(ipaddress.IPv6Address(b)), dport)
    return ProxyHeader(2, _V2_COMMANDS[command], transport, source, destination, tlvs)


# -- writing -----------------------------------------------------------------


def encode(header: ProxyHeader) -> bytes:
    """The bytes of ``header`` as a proxy sends them; :func:`parse` reads them back."""
    return _encode_v1(header) if header.version == 1 else _encode_v2(header)


def _encode_v1(header: ProxyHeader) -> bytes:
    if header.transport == "UNKNOWN" or header.source is None or header.destination is None:
        return b"PROXY UNKNOWN\r\n"
    (src, sport), (dst, dport) = header.source, header.destination
    return f"PROXY {header.transport} {src} {dst} {sport} {dport}\r\n".encode("ascii")


def _encode_v2(header: ProxyHeader) -> bytes:
    family_name, protocol_name = header.transport.split("/")
    family = next(k for k, (name, _) in _V2_FAMILIES.items() if name == family_name)
    protocol = next(k for k, name in _V2_PROTOCOLS.items() if name == protocol_name)
    command = next(k for k, name in _V2_COMMANDS.items() if name == header.command)
    if family_name in ("INET", "INET6") and header.source and header.destination:
        kind = ipaddress.IPv4Address if family_name == "INET" else ipaddress.IPv6Address
        addresses = (
            kind(header.source[0]).packed
            + kind(header.destination[0]).packed
            + struct.pack("!HH", header.source[1], header.destination[1])
        )
    else:
        addresses = bytes(_V2_FAMILIES[family][1])
    tlvs = b"".join(struct.pack("!BH", kind, len(value)) + value for kind, value in header.tlvs)
    body = addresses + tlvs
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, family << 4 | protocol])
        + struct.pack("!H", len(body))
        + body
    )


# -- reading from a socket ---------------------------------------------------


class PeekableSocket(Protocol):
    """A blocking stream socket: gevent's, under monkey-patching, parks one greenlet."""

    def recv(self, size: int, flags: int = 0, /) -> bytes: ...


def read_header(sock: PeekableSocket, versions: tuple[int, ...] = (1, 2)) -> ProxyHeader:
    """Read one header from ``sock``, taking exactly its bytes; parse and return it.

    Blocks until the header is complete (the caller bounds the wait). Raises
    :class:`ProxyProtocolError` on a bad header or when the peer closes first.
    Never takes a byte past the header: it peeks at what has arrived, and
    consumes only what it knows belongs to the header, so it never waits on
    data already buffered (no busy loop) and never swallows the client's bytes.
    """
    taken = b""
    limit = V1_MAX_LENGTH if versions == (1,) else V2_FIXED_LENGTH + 0xFFFF
    while True:
        peeked = sock.recv(limit - len(taken), socket.MSG_PEEK)
        if not peeked:
            raise ClosedBeforeHeader("closed before the PROXY header was complete")
        seen = taken + peeked
        total = header_length(seen, versions)
        # Everything seen is header while the end is unknown (the header ends
        # at its CRLF or its length, neither of which has arrived yet).
        want = len(peeked) if total is None else min(total - len(taken), len(peeked))
        taken += _recv_exactly(sock, want)
        if total is not None and len(taken) == total:
            return parse(taken, versions)


def _recv_exactly(sock: PeekableSocket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ClosedBeforeHeader("closed before the PROXY header was complete")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
