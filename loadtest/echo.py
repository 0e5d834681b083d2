"""Locust users for any RFC 862 echo server: ``locust -f loadtest/ -H tcp://HOST:PORT``.

Every reply is checked byte for byte; a wrong byte, a short read, a reset or a
timeout is a failure in locust's stats, and makes a headless run exit 1.
"""

from __future__ import annotations

from _users import DEFAULT_LARGE_MESSAGE_SIZE, DEFAULT_MESSAGE_SIZE, EchoUser
from locust import task


class PersistentEchoUser(EchoUser):
    """One connection kept open, echoing ``--message-size`` bytes (1 KiB) per request."""

    weight = 10

    def on_start(self) -> None:
        super().on_start()
        self.size = self.option("message_size", DEFAULT_MESSAGE_SIZE)
        self.name = f"persistent {self.size} B"

    @task
    def echo(self) -> None:
        self.client.exchange(self.random.randbytes(self.size), self.name)


class ChurnEchoUser(EchoUser):
    """A new connection for every exchange: measures connect + echo + close."""

    weight = 2

    def on_start(self) -> None:
        super().on_start()
        self.size = self.option("message_size", DEFAULT_MESSAGE_SIZE)
        self.name = f"new connection {self.size} B"

    @task
    def echo(self) -> None:
        self.client.exchange(self.random.randbytes(self.size), self.name)
        self.client.close()


class LargePayloadEchoUser(EchoUser):
    """One connection, ``--large-message-size`` bytes (256 KiB) per request."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.size = self.option("large_message_size", DEFAULT_LARGE_MESSAGE_SIZE)
        self.name = f"large {self.size} B"

    @task
    def echo(self) -> None:
        self.client.exchange(self.random.randbytes(self.size), self.name)
