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

Reflection guard
    UDP's source address is not proven: anyone can send a datagram "from" a
    victim and have the echo sent to it. A token bucket per source
    (``--udp-rate-per-client``, 100 a second with a burst of 200 by default)
    caps what any one address can be sent; past it datagrams are dropped and
    counted. ``--allow``/``--deny`` apply as to TCP.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from geventsrv.addresses import format_address
from geventsrv.limits import AccessList, TokenBuckets, client_ip, client_key

log = logging.getLogger(__name__)

#: Receive buffer: larger than any UDP payload (65,535 minus the UDP header).
BUFFER_SIZE = 65536
#: Source ports below this belong to system services; never answer them.
RESERVED_PORTS = 1024


def reflector_warning(host: str, allow_list: bool, rate: str | None) -> str | None:
    """The start-up warning for UDP echo bound where others can reach it, or ``None``.

    Loopback, or any ``--allow``, and there is nothing to warn about.
    """
    try:
        loopback = client_ip(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or allow_list:
        return None
    return (
        f"UDP echo on {host} answers anyone who can reach it, and a datagram's sender can be "
        f"forged: it can reflect traffic at a victim (at most {rate or 'unlimited'} "
        "datagrams/s to each). Restrict it with --allow, or serve TCP only"
    )


class DatagramEcho:
    """Echo every datagram arriving on ``sock``; ``transform`` may rewrite the data.

    :meth:`serve` runs until the socket is closed. Counters: ``echoed``,
    ``dropped`` (by the loop guard), ``denied`` (by the access list),
    ``limited`` (over the source's rate) and ``errors`` (sends the kernel refused).
    """

    def __init__(
        self,
        sock: socket.socket,
        transform: Callable[[bytes], bytes] | None = None,
        access: AccessList | None = None,
        rate: TokenBuckets | None = None,
        ipv6_prefix: int = 64,
    ):
        self.sock = sock
        self.transform = transform
        self.access = access if access is not None and access.active else None
        self.rate = rate
        self.ipv6_prefix = ipv6_prefix
        self.port = sock.getsockname()[1]
        self.echoed = 0
        self.dropped = 0
        self.denied = 0
        self.limited = 0
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
            if (self.access is not None or self.rate is not None) and not self._admit(sender[0]):
                continue
            data = view[:size] if self.transform is None else self.transform(bytes(view[:size]))
            try:
                sock.sendto(data, sender)
            except OSError as exc:  # e.g. ENOBUFS under a flood: that reply is lost
                self.errors += 1
                log.debug("udp: reply to %s failed: %s", format_address(*sender[:2]), exc)
                continue
            self.echoed += 1

    def _admit(self, host: str) -> bool:
        ip = client_ip(host)
        if self.access is not None and not self.access.permits(ip):
            self.denied += 1
            return False
        if self.rate is not None and not self.rate.allow(client_key(ip, self.ipv6_prefix)):
            self.limited += 1
            return False
        return True
