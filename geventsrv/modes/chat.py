"""Chat mode: every complete line a client sends goes to every other client.

Line-oriented group chat in the style of ``ncat --chat``, built from the same
plain blocking-socket pieces as the echo handlers. Each connection has:

* a reader (the connection's own greenlet) that splits what arrives into lines
  and hands each complete line to the room, prefixed ``<userN> ``;
* an :class:`Outbox` with a byte limit, and a writer greenlet that drains it
  with ``sendall``. A broadcast only appends to outboxes, so a client that
  does not read never makes anyone else wait; when its outbox would pass the
  limit, the client is disconnected and its memory freed.

Protocol, as a client sees it::

    <announce> 127.0.0.1 is connected as <user3>.      (to everyone, new client included)
    <announce> already connected: <user1>, <user2>.    (to the new client only)
    <user1> hello                                      (a line from user1, raw bytes)
    <announce> <user1> is disconnected.                (to everyone left)
    <error> line longer than 65536 bytes; closing.     (to a client that overflowed)

Lines end with ``\\n`` and pass through byte for byte (no decoding, so any
binary content survives); a last line without ``\\n`` is delivered, terminated,
when its sender closes. A client never receives its own lines.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import socket
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event

from geventsrv.connection import RECV_SIZE, Connection, Handler

if TYPE_CHECKING:
    from geventsrv.config import Config

log = logging.getLogger(__name__)

#: Longest line accepted, newline excluded; a longer one closes the connection.
MAX_LINE = 64 * 1024
#: Most bytes queued for one client before it is disconnected as too slow.
OUTBOX_LIMIT = 1024 * 1024
#: Seconds a refused client gets to read its error message before the close.
FAREWELL_TIMEOUT = 2.0


class Outbox:
    """Bytes waiting to be written to one client, with a hard size limit.

    Only its writer greenlet takes from it; anyone may :meth:`put`. Once
    closed it accepts nothing and its writer finishes.
    """

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self.size = 0
        self.closed = False
        self._parts: collections.deque[bytes] = collections.deque()
        self._ready = Event()

    def put(self, data: bytes) -> bool:
        """Queue ``data``; ``False`` (and nothing queued) if it would pass the limit."""
        if self.closed:
            return True
        if self.size + len(data) > self.limit:
            return False
        self._parts.append(data)
        self.size += len(data)
        self._ready.set()
        return True

    def take(self) -> bytes:
        """Wait for data and return all of it at once; ``b""`` once closed and empty."""
        while not self._parts:
            if self.closed:
                return b""
            self._ready.clear()
            self._ready.wait()
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data

    def put_last(self, data: bytes) -> None:
        """Queue ``data`` whatever the limit, then close: a final word before hanging up."""
        self._parts.append(data)
        self.size += len(data)
        self.close()

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class Member:
    """One connected chat client, as the room sees it."""

    __slots__ = ("conn", "dropped", "name", "outbox")

    def __init__(self, conn: Connection, name: str, outbox_limit: int) -> None:
        self.conn = conn
        self.name = name
        self.outbox = Outbox(outbox_limit)
        self.dropped = False

    def send(self, data: bytes) -> None:
        """Queue ``data``; a member whose outbox is full is disconnected."""
        if self.dropped or self.outbox.put(data):
            return
        self.dropped = True
        log.info(
            "%s (%s): dropped, not reading (%d bytes queued)",
            self.name,
            self.conn.client,
            self.outbox.size,
        )
        self.outbox.close()
        with contextlib.suppress(OSError):  # already gone
            # Ends the member's reader (recv returns b"") and writer (EPIPE).
            self.conn.sock.shutdown(socket.SHUT_RDWR)


class ChatRoom:
    """The connected members of one server; :meth:`handle` is the connection handler."""

    def __init__(self, max_line: int = MAX_LINE, outbox_limit: int = OUTBOX_LIMIT) -> None:
        self.max_line = max_line
        self.outbox_limit = outbox_limit
        self.members: dict[str, Member] = {}
        self._numbers = itertools.count(1)

    def broadcast(self, data: bytes, sender: Member | None = None) -> None:
        for member in list(self.members.values()):
            if member is not sender:
                member.send(data)

    def handle(self, conn: Connection) -> None:
        """Serve one chat client until it leaves (the server's connection handler)."""
        member = Member(conn, f"<user{next(self._numbers)}>", self.outbox_limit)
        host = conn.client.rsplit(":", 1)[0].strip("[]")
        others = ", ".join(self.members) or "nobody"
        self.members[member.name] = member
        writer = gevent.spawn(self._write, member)
        try:
            self.broadcast(f"<announce> {host} is connected as {member.name}.\n".encode())
            member.send(f"<announce> already connected: {others}.\n".encode())
            try:
                farewell = self._read(member)
            except OSError:
                if member.dropped:  # shutdown() for being too slow woke the reader
                    return
                raise
            if farewell:
                member.outbox.put_last(farewell)
                writer.join(timeout=FAREWELL_TIMEOUT)
        finally:
            del self.members[member.name]
            member.outbox.close()
            writer.kill()
            self.broadcast(f"<announce> {member.name} is disconnected.\n".encode())

    def _read(self, member: Member) -> bytes | None:
        """Relay the member's lines until it leaves; returns a last message for it, if any."""
        sock = member.conn.sock
        prefix = member.name.encode() + b" "
        pending = b""
        while True:
            data = sock.recv(RECV_SIZE)
            member.conn.bytes_received += len(data)
            if not data:
                if pending and not member.dropped:
                    self.broadcast(prefix + pending + b"\n", member)
                return None
            pending += data
            *lines, pending = pending.split(b"\n")
            # A complete line can be over the limit too: all of it may arrive
            # in the recv() that also brings its newline.
            too_long = next((n for n, line in enumerate(lines) if len(line) > self.max_line), None)
            if too_long is not None:
                del lines[too_long:]
            if lines:
                self.broadcast(b"".join(prefix + line + b"\n" for line in lines), member)
                # A fast sender's recv() never has to wait, so without this its
                # greenlet would never give the writers a turn and every outbox
                # would fill: let the greenlets that are ready run first.
                gevent.sleep(0)
            if too_long is not None or len(pending) > self.max_line:
                notice = f"<error> line longer than {self.max_line} bytes; closing."
                log.info("%s (%s): %s", member.name, member.conn.client, notice)
                return notice.encode() + b"\n"

    def _write(self, member: Member) -> None:
        sock = member.conn.sock
        try:
            while data := member.outbox.take():
                sock.sendall(data)
                # Counted, a member that only listens is not idle while the room talks.
                member.conn.bytes_sent += len(data)
        except OSError as exc:
            log.debug("%s: write failed: %s", member.name, exc)


def chat_handler(config: Config) -> Handler:
    """``--mode chat``'s handler: one room per server."""
    return ChatRoom().handle
