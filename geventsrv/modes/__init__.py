"""The handler family: the table that names every mode, and the layer-4 modes' modules.

Each mode's handler keeps the contract of :mod:`geventsrv.connection`: echo and
upper (:mod:`~geventsrv.modes.echo`), info (:mod:`~geventsrv.modes.info`) and
chat (:mod:`~geventsrv.modes.chat`) live here; http, a family of its own
(HTTP/1.1, HTTP/2, WebSocket and what they serve), in :mod:`geventsrv.http`.
:data:`MODES` is the one table every other part reads: :mod:`geventsrv.config`
validates a mode name, its combinations (UDP, workers) and its own settings
against it, :class:`~geventsrv.server.EchoServer` asks it for a handler, the
UDP service for its transform. A handler's module is imported only when a
server asks for it, so reading the table stays cheap (``geventsrv.config``
imports it before the process is monkey-patched): a mode's settings live in a
module of their own, which imports nothing of the mode's code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geventsrv.config import Config
    from geventsrv.connection import Handler

from geventsrv.http.settings import HttpSettings


@dataclass(frozen=True)
class Mode:
    """What a mode does over TCP and UDP, and whether workers may share it."""

    name: str
    #: One line for ``--help`` and the docs.
    summary: str
    #: ``module:factory``: the factory, given the server's :class:`~geventsrv.config.Config`,
    #: builds the TCP handler; called once per server (chat's room lives in it).
    #: A module named without a dot is one of this package's.
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
    #: The group of settings only this mode reads (a base class of Config), if any:
    #: judged by its ``check`` under this mode, refused unless at its defaults under
    #: any other.
    settings: type[HttpSettings] | None = None
    #: What it offers by ALPN over TLS when ``--tls-alpn`` does not say, in order.
    alpn: tuple[str, ...] = ()

    def make_handler(self, config: Config) -> Handler:
        """The handler for a server configured by ``config``."""
        module, _, name = self.factory.partition(":")
        if "." not in module:
            module = f"geventsrv.modes.{module}"
        factory: Callable[[Config], Handler] = getattr(importlib.import_module(module), name)
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
            "every HTTP request answered with a JSON reflection of what arrived; /echo, /sse, "
            "WebSocket",
            "geventsrv.http.mode:HttpMode",
            serves_udp=False,
            udp_transform=None,
            across_workers=True,
            logs_requests=True,
            settings=HttpSettings,
            alpn=("h2", "http/1.1"),
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
