"""Locust users for geventsrv's http mode: ``locust -f loadtest/ -H http://HOST:PORT``.

They are locust's own :class:`~locust.HttpUser`: a keep-alive session per user,
locust's timing and stats. Every response is checked against what the user
sent: the reflection must carry the request's own header, query value and
body back, or the request is a failure (and a headless run exits 1).

A run is made of the users that speak to its host: ``-H http://...`` runs these
and the WebSocket users, ``-H tcp://...`` the echo and chat users. Named on the
command line against a host they do not speak to, they stop at once.
"""

from __future__ import annotations

import json
import random
import string

from locust import HttpUser, constant, task


def is_http(host: str | None) -> bool:
    return (host or "").startswith(("http://", "https://"))


class ReflectedRequestUser(HttpUser):
    """POSTs a fresh random token and body on a kept-alive connection; checks the reflection."""

    #: The hosts it speaks to.
    schemes = ("http", "https")
    wait_time = constant(0)
    weight = 1

    def on_start(self) -> None:
        if not is_http(self.host):
            self.stop()  # not an HTTP host: the echo users' run
        self.random = random.Random()

    @task
    def reflect(self) -> None:
        token = "".join(self.random.choices(string.ascii_letters, k=16))
        body = "".join(self.random.choices(string.printable, k=self.random.randint(0, 2048)))
        with self.client.post(
            f"/reflect?token={token}",
            data=body.encode(),
            headers={"X-Loadtest-Token": token},
            name="POST /reflect",
            catch_response=True,
        ) as response:
            problem = check_reflection(response.text, token, body)
            if problem:
                response.failure(problem)


def check_reflection(text: str, token: str, body: str) -> str:
    """What is wrong with a reflection of the request sent, or ``""``."""
    try:
        seen = json.loads(text)
        request = seen["request"]
    except (ValueError, KeyError, TypeError):
        return f"not a reflection: {text[:80]!r}"
    if ["X-Loadtest-Token", token] not in request["headers"]:
        return "the request's own header did not come back"
    if request["query"].get("token") != [token]:
        return "the request's query did not come back"
    if seen["body"]["text"] != body:
        return f"the body came back different ({seen['body']['size']} of {len(body)} bytes)"
    return ""
