"""``--mode info``: say what the server saw of a connection, then echo.

For testing what sits in front of a server: one ``nc`` or ``openssl s_client``
shows which backend answered (``host``, ``pid``, ``worker``) and what the
balancer passed on (``client`` from the PROXY header, ``proxy`` with its
TLVs, ``tls`` as negotiated). The first line the client receives is one JSON
object ending in ``\\n``; every byte after it is the echo of what the client
sends.

The schema (every key always present; ``null`` where it does not apply):

========== ==================================================================
key        value
========== ==================================================================
client     the client's address, ``host:port``: the PROXY header's source
           when there is one, else the socket's peer
peer       the socket's peer, ``host:port`` (the proxy, behind one)
local      the server's own address on this connection, ``host:port``
proxy      ``null``, or {version, command, transport, source, destination,
           tlvs: {alpn, authority, unique_id, ssl: {...}, netns}}
tls        ``null``, or {version, cipher, sni, alpn, client_cert}
worker     the worker's number under ``--workers N`` (1..N), 0 alone
pid        the serving process's id
host       the machine's host name
connection this connection's number, counted from 1 per process
========== ==================================================================
"""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING

from geventsrv.addresses import format_address
from geventsrv.connection import Connection
from geventsrv.modes.echo import relay
from geventsrv.proxyproto import ProxyHeader

if TYPE_CHECKING:
    from geventsrv.config import Config


def _address(address: tuple[str, int] | None) -> str | None:
    return None if address is None else format_address(address[0], address[1])


def describe_proxy(header: ProxyHeader | None) -> dict[str, object] | None:
    """A PROXY header as the info line shows it."""
    if header is None:
        return None
    return {
        "version": header.version,
        "command": header.command,
        "transport": header.transport,
        "source": _address(header.source),
        "destination": _address(header.destination),
        "tlvs": header.tlv_fields(),
    }


class InfoHandler:
    """The info mode's handler; knows the process-wide fields once."""

    def __init__(self, config: Config) -> None:
        self.worker = config.worker_id
        self.pid = os.getpid()
        self.host = socket.gethostname()

    def describe(self, conn: Connection) -> dict[str, object]:
        """The info line's fields for ``conn`` (see the module's schema)."""
        sock = conn.sock
        return {
            "client": conn.client,
            "peer": conn.peer,
            "local": format_address(*sock.getsockname()[:2]),
            "proxy": describe_proxy(conn.proxy),
            "tls": conn.tls,
            "worker": self.worker,
            "pid": self.pid,
            "host": self.host,
            "connection": conn.number,
        }

    def __call__(self, conn: Connection) -> None:
        line = (json.dumps(self.describe(conn), separators=(", ", ": ")) + "\n").encode()
        conn.sock.sendall(line)
        conn.bytes_sent += len(line)
        relay(conn)
