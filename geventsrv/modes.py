"""The server's modes: for each, its TCP handler, what UDP does, and where it can run.

The one table every part reads: :mod:`geventsrv.config` validates a mode name
and its combinations (UDP, workers) against it, :class:`~geventsrv.server.EchoServer`
asks it for a handler, and the UDP service for its transform. Handlers are
imported only when a server asks for one, so reading the table stays cheap
(``geventsrv.config`` imports it before the process is monkey-patched).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geventsrv.connection import Handler


@dataclass(frozen=True)
class Mode:
    """What a mode does over TCP and UDP, and whether workers may share it."""

    name: str
    #: One line for ``--help`` and the docs.
    summary: str
    #: Builds the TCP handler, given the worker's id (0 alone; info mode names
    #: it); called once per server (chat's room lives in it).
    make_handler: Callable[[int], Handler]
    #: Whether UDP echo is served in this mode, and what it does to a datagram
    #: (``None``: sent back unchanged).
    serves_udp: bool
    udp_transform: Callable[[bytes], bytes] | None
    #: Whether N worker processes can each run it alone and still be one
    #: service (chat cannot: each worker would hold a room of its own).
    across_workers: bool


def _echo(worker_id: int) -> Handler:
    from geventsrv.connection import echo

    return echo


def _upper(worker_id: int) -> Handler:
    from geventsrv.connection import upper

    return upper


def _chat(worker_id: int) -> Handler:
    from geventsrv.chat import ChatRoom

    return ChatRoom().handle


def _info(worker_id: int) -> Handler:
    from geventsrv.info import InfoHandler

    return InfoHandler(worker_id)


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "echo",
            "bytes back unchanged (RFC 862)",
            _echo,
            serves_udp=True,
            udp_transform=None,
            across_workers=True,
        ),
        Mode(
            "upper",
            "ASCII letters upper-cased, every other byte unchanged",
            _upper,
            serves_udp=True,
            udp_transform=bytes.upper,
            across_workers=True,
        ),
        Mode(
            "info",
            "one JSON line describing the connection as the server saw it, then echo",
            _info,
            serves_udp=False,
            udp_transform=None,
            across_workers=True,
        ),
        Mode(
            "chat",
            "each line to every other client",
            _chat,
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
