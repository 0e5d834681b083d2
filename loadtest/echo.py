"""Locust users for any RFC 862 echo server: ``locust -f loadtest/ -H tcp://HOST:PORT``.

Every reply is checked byte for byte; a wrong byte, a short read, a reset or a
timeout is a failure in locust's stats, and makes a headless run exit 1.
"""

from __future__ import annotations

from _users import DEFAULT_LARGE_MESSAGE_SIZE, EchoUser
from locust import task


class PersistentEchoUser(EchoUser):
    """One connection kept open, echoing ``--message-size`` bytes (1 KiB) per request."""

    weight = 10
    label = "persistent {size} B"

    @task
    def echo(self) -> None:
        self.client.exchange(self.random.randbytes(self.size), self.name)


class ChurnEchoUser(EchoUser):
    """A new connection for every exchange: measures connect + echo + close."""

    weight = 2
    label = "new connection {size} B"

    @task
    def echo(self) -> None:
        self.client.exchange(self.random.randbytes(self.size), self.name)
        self.client.close()


class LargePayloadEchoUser(EchoUser):
    """One connection, ``--large-message-size`` bytes (256 KiB) per request."""

    weight = 1
    size_option = "large_message_size"
    default_size = DEFAULT_LARGE_MESSAGE_SIZE
    label = "large {size} B"

    @task
    def echo(self) -> None:
        self.client.exchange(self.random.randbytes(self.size), self.name)
