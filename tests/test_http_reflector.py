"""The reflection as the server writes it, against the schema's own builder: the same bytes,
whatever the request (a differential test over generated requests), and the connection's part
made once per connection."""

from __future__ import annotations

import json
import socket
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from geventsrv.connection import Connection
from geventsrv.http.exchange import Exchange, Request
from geventsrv.http.reflection import connection_part, encode, request_part
from geventsrv.http.reflector import Answerer, request_json
from geventsrv.proxyproto import ProxyHeader

JWT = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
TEXT = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([
        b"Basic dXNlcjpwdw==", b"Bearer " + JWT, b"a=1; b=\"2\"",
        b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=XX",
    ]),
)  # fmt: skip
FORM = (
    b'--XX\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\nabc\r\n--XX--\r\n'
)

NAMES = st.sampled_from(
    [
        b"Host",
        b"x-forwarded-for",
        b"X-Real-IP",
        b"forwarded",
        b"cookie",
        b"X-\xe9",
        b"a" * 15,
        b"Authorization",
        b"content-type",
        b"abcdef",
    ]
)
FIELDS = st.lists(st.tuples(NAMES, TEXT), max_size=8)
PROXY = ProxyHeader(1, "PROXY", "TCP4", ("198.51.100.7", 40001), ("203.0.113.1", 7))


@settings(max_examples=300, deadline=None)
@given(
    number=st.one_of(st.none(), st.integers(1, 10**6)),
    method=st.sampled_from([b"GET", b"POST", b"PURGE", b"CONNECT"]),
    target=st.one_of(st.just(b"/"), st.binary(max_size=60).map(lambda b: b"/" + b)),
    version=st.sampled_from(["1.0", "1.1", "2"]),
    headers=FIELDS,
    body=st.one_of(
        st.just(b""),
        st.binary(max_size=60),
        st.just(b'{"k": [1, 2.5, null]}'),
        st.just(b"a=1&b=%C3%A9"),
        st.just(FORM),
    ),
    peer=st.sampled_from(["127.0.0.1:5555", "[::1]:1"]),
    proxy=st.one_of(st.none(), st.just(PROXY)),
    stream=st.one_of(st.none(), st.integers(1, 99)),
    pseudo=st.one_of(st.none(), FIELDS),
    trailers=st.one_of(st.none(), FIELDS),
    arrived=st.one_of(st.none(), st.tuples(st.sampled_from(["gzip", "br"]), st.integers(0, 99))),
    served=st.one_of(st.none(), st.integers(1, 10**9)),
    answered=st.one_of(st.none(), st.floats(0, 4e9).map(lambda t: int(t * 1000) / 1000)),
)
def test_the_written_request_part_is_what_the_schema_builder_encodes(
    number, method, target, version, headers, body, peer, proxy, stream, pseudo, trailers,
    arrived, served, answered,
):  # fmt: skip
    args = (number, method, target, version, headers, body, peer, proxy, stream, pseudo)
    built = request_part(*args, trailers, arrived, served, answered)
    expected = encode(built)[:-2]  # without the closing brace and the newline
    written = request_json(*args, trailers, arrived, served, answered)
    assert written == expected.decode()
    assert written == request_json(*args, trailers, arrived, served, answered)  # from what was kept


def test_a_whole_reflection_is_one_line_of_the_schema_and_its_connection_part_is_kept():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        conn = Connection(sock, "127.0.0.1:5555", 7)
        request = Request(b"GET", b"/a?x=1", "1.1", [(b"Host", b"t")])
        answerer = Answerer("box", 2, 42)
        reflected = answerer.reflect(Exchange(conn, request, 3), b"")
        assert reflected.endswith(b"}\n") and reflected.count(b"\n") == 1
        document = json.loads(reflected)
        before = time.time()
        served, answered = document["request"]["served"], document["request"]["answered"]
        assert served == 1 and before - 60 < answered <= before
        document["request"]["served"] = document["request"]["answered"] = None
        server = {"host": "box", "worker": 2, "pid": 42,
                  "local": f"127.0.0.1:{sock.getsockname()[1]}", "connection": 7}  # fmt: skip
        assert document == json.loads(
            encode(request_part(3, b"GET", b"/a?x=1", "1.1", [(b"Host", b"t")], b"",
                                "127.0.0.1:5555", None) | connection_part(None, None, server))
        )  # fmt: skip
        conn.tls = {"changed": "after the first"}  # the connection's part is made once
        again = json.loads(answerer.reflect(Exchange(conn, request, 4), b""))
        assert again["tls"] is None and again["request"]["served"] == 2
