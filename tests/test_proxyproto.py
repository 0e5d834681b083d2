"""The PROXY protocol parser: properties (hypothesis), refusals, exact reads from a socket."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from geventsrv.proxyproto import (
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_SSL,
    PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    encode,
    header_length,
    parse,
    read_header,
)

ports = st.integers(0, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=6).map(tuple)


@st.composite
def v1_headers(draw):
    transport = draw(st.sampled_from(["TCP4", "TCP6", "UNKNOWN"]))
    if transport == "UNKNOWN":
        return ProxyHeader(1, "PROXY", "UNKNOWN")
    addresses = ipv4 if transport == "TCP4" else ipv6
    source = (draw(addresses), draw(ports))
    destination = (draw(addresses), draw(ports))
    return ProxyHeader(1, "PROXY", transport, source, destination)


@st.composite
def v2_headers(draw):
    command = draw(st.sampled_from(["PROXY", "LOCAL"]))
    family = draw(st.sampled_from(["INET", "INET6", "UNSPEC", "UNIX"]))
    protocol = draw(st.sampled_from(["STREAM", "DGRAM", "UNSPEC"]))
    source = destination = None
    if family in ("INET", "INET6"):
        addresses = ipv4 if family == "INET" else ipv6
        source = (draw(addresses), draw(ports))
        destination = (draw(addresses), draw(ports))
    return ProxyHeader(2, command, f"{family}/{protocol}", source, destination, draw(tlvs))


headers = st.one_of(v1_headers(), v2_headers())


@given(headers)
def test_every_valid_header_round_trips(header):
    data = encode(header)
    assert header_length(data) == len(data)
    assert parse(data) == header


@given(headers, st.binary(max_size=64))
def test_the_length_is_found_with_bytes_after_the_header(header, after):
    data = encode(header)
    assert header_length(data + after) == len(data)


@given(headers, st.data())
def test_every_truncation_asks_for_more_or_is_refused(header, data):
    whole = encode(header)
    cut = data.draw(st.integers(0, len(whole) - 1))
    length = header_length(whole[:cut])
    assert length is None or length > cut  # v2 knows its length after 16 bytes
    with pytest.raises(ProxyProtocolError):
        parse(whole[:cut])


@given(headers, st.data())
@settings(max_examples=300)
def test_mutations_are_parsed_or_refused_never_crash(header, data):
    whole = bytearray(encode(header))
    at = data.draw(st.integers(0, len(whole) - 1))
    whole[at] = data.draw(st.integers(0, 255))
    try:
        length = header_length(bytes(whole))
        if length is not None and length <= len(whole):
            parse(bytes(whole[:length]))
    except ProxyProtocolError:
        pass


@given(st.binary(max_size=300))
@example(V2_SIGNATURE + b"\x21\x11\x00\x0b" + bytes(11))
@example(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
def test_random_bytes_never_crash(data):
    try:
        length = header_length(data)
        if length is not None and length <= len(data):
            parse(data[:length])
    except ProxyProtocolError:
        pass


REFUSED = {
    "HTTP instead": b"GET / HTTP/1.1\r\n",
    "lower case": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 too long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v1 two spaces": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 bad family": b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 family mismatch": b"PROXY TCP4 ::1 ::1 1 2\r\n",
    "v1 leading zero port": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "v1 port too big": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "v1 signed port": b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "v1 octal address": b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
    "v1 missing field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "v1 not ascii": "PROXY TCP4 1.2.3.4 5.6.7.8 1 \u0662\r\n".encode(),
    "v2 bad signature": b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + bytes(12),
    "v2 version 1": V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),
    "v2 bad command": V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),
    "v2 bad family": V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12),
    "v2 short addresses": V2_SIGNATURE + b"\x21\x11\x00\x0b" + bytes(11),
    "v2 truncated TLV": V2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(12) + b"\x01\x00",
    "v2 TLV overruns": V2_SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x09x",
}


@pytest.mark.parametrize("name", REFUSED)
def test_malformed_headers_are_refused(name):
    data = REFUSED[name]
    with pytest.raises(ProxyProtocolError):
        length = header_length(data)
        assert length is not None
        parse(data[:length])


def test_versions_not_asked_for_are_refused():
    v1 = encode(ProxyHeader(1, "PROXY", "UNKNOWN"))
    v2 = encode(ProxyHeader(2, "LOCAL", "UNSPEC/UNSPEC"))
    with pytest.raises(ProxyProtocolError):
        header_length(v1, versions=(2,))
    with pytest.raises(ProxyProtocolError):
        header_length(v2, versions=(1,))
    assert parse(v1, versions=(1,)).version == 1
    assert parse(v2, versions=(2,)).command == "LOCAL"


def test_v1_is_bounded_at_107_bytes():
    longest = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert header_length(longest) == V1_MAX_LENGTH
    assert header_length(longest[:-1]) is None  # 106 bytes: the LF may still come
    with pytest.raises(ProxyProtocolError):
        header_length(longest[:-2] + b"xx")  # 107 bytes and no CRLF: never valid


def test_known_tlvs_are_decoded_and_unknown_ones_skipped():
    ssl_tlv = (
        bytes([PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN])
        + b"\x00\x00\x00\x00"
        + bytes([PP2_SUBTYPE_SSL_VERSION, 0, 7])
        + b"TLSv1.3"
        + bytes([PP2_SUBTYPE_SSL_CN, 0, 6])
        + b"tester"
    )
    header = ProxyHeader(
        2,
        "PROXY",
        "INET/STREAM",
        ("192.0.2.1", 1000),
        ("192.0.2.2", 443),
        (
            (PP2_TYPE_ALPN, b"h2"),
            (PP2_TYPE_AUTHORITY, b"example.test"),
            (PP2_TYPE_UNIQUE_ID, b"\x01\x02"),
            (PP2_TYPE_SSL, ssl_tlv),
            (0xE0, b"private"),
        ),
    )
    assert parse(encode(header)).tlv_fields() == {
        "alpn": "h2",
        "authority": "example.test",
        "unique_id": "0102",
        "ssl": {
            "client_ssl": True,
            "client_cert": True,
            "client_cert_verified": True,
            "version": "TLSv1.3",
            "cn": "tester",
        },
    }


# -- reading from a real socket ---------------------------------------------------


def socket_pair():
    near, far = socket.socketpair()
    for sock in (near, far):
        sock.settimeout(5)
    return near, far


@pytest.mark.parametrize(
    "header",
    [
        ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.1", 5), ("192.0.2.2", 6)),
        ProxyHeader(2, "PROXY", "INET6/STREAM", ("2001:db8::1", 5), ("2001:db8::2", 6)),
    ],
)
def test_read_takes_the_header_and_not_one_byte_more(header):
    near, far = socket_pair()
    with near, far:
        far.sendall(encode(header) + b"client bytes")
        assert read_header(near) == header
        assert near.recv(100) == b"client bytes"


@pytest.mark.parametrize("version", [1, 2])
def test_read_a_header_that_arrives_a_byte_at_a_time(version):
    header = (
        ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.1", 5), ("192.0.2.2", 6))
        if version == 1
        else ProxyHeader(2, "PROXY", "INET/STREAM", ("192.0.2.1", 5), ("192.0.2.2", 6))
    )
    near, far = socket_pair()

    def trickle():
        for byte in encode(header) + b"after":
            far.sendall(bytes([byte]))
            time.sleep(0.002)

    with near, far:
        sender = threading.Thread(target=trickle)
        sender.start()
        assert read_header(near) == header
        sender.join()
        assert near.recv(100).startswith(b"a")


def test_read_refuses_at_the_first_wrong_byte_without_waiting():
    near, far = socket_pair()
    with near, far:
        far.sendall(b"G")  # the rest of "GET /" never comes
        with pytest.raises(ProxyProtocolError):
            read_header(near)


def test_read_refuses_a_peer_that_closes_mid_header():
    near, far = socket_pair()
    with near:
        far.sendall(b"PROXY TCP4 1.2.")
        far.close()
        with pytest.raises(ProxyProtocolError, match="closed"):
            read_header(near)
