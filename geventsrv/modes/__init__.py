"""The handler family: one module per mode, and the table that names them.

Each mode is a module here (:mod:`~geventsrv.modes.echo`, :mod:`~geventsrv.modes.info`,
:mod:`~geventsrv.modes.chat`) whose handler keeps the contract of
:mod:`geventsrv.connection`. :data:`MODES` is the one table every other part
reads: :mod:`geventsrv.config` validates a mode name and its combinations
(UDP, workers) against it, :class:`~geventsrv.server.EchoServer` asks it for a
handler, the UDP service for its transform. A handler's module is imported
only when a server asks for it, so reading the table stays cheap
(``geventsrv.config`` imports it before the process is monkey-patched).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geventsrv.config import Config
    from geventsrv.connection import Handler


@dataclass(frozen=True)
class Mode:
    """What a mode does over TCP and UDP, and whether workers may share it."""

    name: str
    #: One line for ``--help`` and the docs.
    summary: str
    #: ``module:factory``: the factory, given the server's :class:`~geventsrv.config.Config`,
    #: builds the TCP handler; called once per server (chat's room lives in it).
    factory: str
    #: Whether UDP echo is served in this mode, and what it does to a datagram
    #: (``None``: sent back unchanged).
    serves_udp: bool
    udp_transform: Callable[[bytes], bytes] | None
    #: Whether N worker processes can each run it alone and still be one
    #: service (chat cannot: each worker would hold a room of its own).
    across_workers: bool
    #: Whether its handler writes the access log itself, one line per request
    #: (the server then writes none per connection).
    logs_requests: bool = False

    def make_handler(self, config: Config) -> Handler:
        """The handler for a server configured by ``config``."""
        module, _, name = self.factory.partition(":")
        factory: Callable[[Config], Handler] = getattr(
            importlib.import_module(f"geventsrv.modes.{module}"), name
        )
        return factory(config)


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "echo",
            "bytes back unchanged (RFC 862)",
            "echo:echo_handler",
            serves_udp=True,
            udp_transform=None,
            across_workers=True,
        ),
        Mode(
            "upper",
            "ASCII letters upper-cased, every other byte unchanged",
            "echo:upper_handler",
            serves_udp=True,
            udp_transform=bytes.upper,
            across_workers=True,
        ),
        Mode(
            "info",
            "one JSON line describing the connection as the server saw it, then echo",
            "info:InfoHandler",
            serves_udp=False,
            udp_transform=None,
            across_workers=True,
        ),
        Mode(
            "http",
            "every HTTP/1.1 request answered with a JSON reflection of what arrived",
            "http:HttpReflector",
            serves_udp=False,
            udp_transform=None,
            across_workers=True,
            logs_requests=True,
        ),
        Mode(
            "chat",
            "each line to every other client",
            "chat:chat_handler",
            serves_udp=False,
            udp_transform=None,
            across_workers=False,
        ),
    )
}

#: Mode names in the order ``--help`` lists them.
MODE_NAMES = tuple(MODES)


def get(name: str) -> Mode:
    """The mode called ``name``; ``KeyError`` if there is none (Config validates first)."""
    return MODES[name]
