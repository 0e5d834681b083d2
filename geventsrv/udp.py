"""UDP echo (RFC 862): each datagram's data goes back in one datagram to its sender.

Plain blocking-socket code again: one greenlet loops on ``recvfrom_into`` and
``sendto``. One preallocated buffer holds the largest possible datagram, so
any size from 0 to 65,507 bytes (IPv4; 65,527 over IPv6) is echoed whole, and
a flood of datagrams costs no memory: what the kernel cannot queue, it drops.

Loop guard
    As BSD inetd does, datagrams from a source port below 1024 (a service
    such as chargen or another echo server) or from this server's own port
    are dropped and counted, never answered: two echo services answering each
    other would loop for ever.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from geventsrv.addresses import format_address

log = logging.getLogger(__name__)

#: Receive buffer: larger than any UDP payload (65,535 minus the UDP header).
BUFFER_SIZE = 65536
#: Source ports below this belong to system services; never answer them.
RESERVED_PORTS = 1024


class DatagramEcho:
    """Echo every datagram arriving on ``sock``; ``transform`` may rewrite the data.

    :meth:`serve` runs until the socket is closed. Counters: ``echoed``,
    ``dropped`` (by the loop guard) and ``errors`` (sends the kernel refused).
    """

    def __init__(self, sock: socket.socket, transform: Callable[[bytes], bytes] | None = None):
        self.sock = sock
        self.transform = transform
        self.port = sock.getsockname()[1]
        self.echoed = 0
        self.dropped = 0
        self.errors = 0

    def serve(self) -> None:
        sock = self.sock
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        own_port = self.port
        while True:
            try:
                size, sender = sock.recvfrom_into(buffer)
            except OSError as exc:
                if sock.fileno() < 0:
                    return  # closed: the server is stopping
                log.debug("udp: receive failed: %s", exc)
                continue
            port = sender[1]
            if port < RESERVED_PORTS or port == own_port:
                self.dropped += 1
                log.debug("udp: dropped datagram from %s (loop guard)", format_address(*sender[:2]))
                continue
            data = view[:size] if self.transform is None else self.transform(bytes(view[:size]))
            try:
                sock.sendto(data, sender)
            except OSError as exc:  # e.g. ENOBUFS under a flood: that reply is lost
                self.errors += 1
                log.debug("udp: reply to %s failed: %s", format_address(*sender[:2]), exc)
                continue
            self.echoed += 1
