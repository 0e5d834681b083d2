"""Credentials: a required scheme judged (401 with the challenge, 403 when wrong), what
arrived shown in the reflection (a JWT decoded, never verified), and never logged."""

from __future__ import annotations

import base64
import json

import pytest
from http1client import fetch

from geventsrv.http.auth import Requirement, decode_jwt, describe


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def jwt(header: dict[str, object], claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"


def test_requirements_parse_and_judge():
    needed = Requirement.parse("basic:ann:s3cret:with:colons")
    assert (needed.user, needed.password) == ("ann", "s3cret:with:colons")
    assert needed.judge(basic("ann", "s3cret:with:colons").encode()) is None
    assert needed.judge(basic("ann", "wrong").encode()) == 403
    assert needed.judge(b"Bearer x") == 401 and needed.judge(None) == 401
    assert Requirement.parse("bearer").judge(b"Bearer anything") is None
    assert Requirement.parse("bearer:t0k").judge(b"Bearer other") == 403
    for bad in ("basic", "basic:nopassword", "digest:a:b"):
        with pytest.raises(ValueError):
            Requirement.parse(bad)


def test_a_jwt_is_decoded_and_said_to_be_unverified():
    token = jwt({"alg": "RS256", "kid": "k1"}, {"sub": "ann", "aud": ["api"]})
    assert decode_jwt(token) == {
        "header": {"alg": "RS256", "kid": "k1"}, "claims": {"sub": "ann", "aud": ["api"]},
        "verified": False,
    }  # fmt: skip
    assert decode_jwt("opaque-token") is None and decode_jwt("a.b.c") is None
    assert describe(b"Basic !!notbase64")["user"] is None
    assert describe(basic("ann", "pw").encode()) == {"scheme": "basic", "user": "ann", "jwt": None}


def test_required_credentials_401_403_200(http_server):
    target = "/private"
    asked = {"X-Echo-Auth": "basic:ann:pw"}
    status, headers, _ = fetch(http_server, target, headers=asked)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="geventsrv"'
    wrong = asked | {"Authorization": basic("ann", "nope")}
    assert fetch(http_server, target, headers=wrong)[0] == 403
    right = asked | {"Authorization": basic("ann", "pw")}
    status, _, body = fetch(http_server, target, headers=right)
    assert status == 200 and json.loads(body)["request"]["auth"]["user"] == "ann"
    status, headers, _ = fetch(http_server, "/?auth=bearer")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")


def test_the_reflection_shows_a_gateways_jwt(http_server):
    token = jwt({"alg": "HS256"}, {"sub": "svc", "scope": "read"})
    _, _, body = fetch(http_server, "/", headers={"Authorization": f"Bearer {token}"})
    auth = json.loads(body)["request"]["auth"]
    assert auth["scheme"] == "bearer" and auth["jwt"]["claims"] == {"sub": "svc", "scope": "read"}
    assert auth["jwt"]["verified"] is False
    assert json.loads(fetch(http_server, "/")[2])["request"]["auth"] is None


def test_credentials_never_reach_the_access_log(start_server):
    server = start_server("--mode", "http", "--access-log")
    fetch(server, "/?auth=basic:ann:pw-in-query", headers={"Authorization": basic("ann", "x")})
    fetch(server, "/", headers={"Authorization": "Bearer tok-in-header"})
    server.stop()
    log = server.stderr
    assert log.count(" 403, ") == 1 and log.count(" 200, ") == 1
    assert "pw-in-query" not in log and "tok-in-header" not in log
    assert basic("ann", "x").split()[1] not in log
