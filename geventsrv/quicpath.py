"""How large a QUIC connection's datagrams may be: its path's MTU, probed (RFC 8899, RFC 9000 14.3).

Every QUIC path carries 1,200-byte datagrams, so that is where a connection
begins. Most paths carry more (1,472 bytes of UDP on Ethernet, 8,972 with
jumbo frames, 65,507 on loopback, of which 16,383 are used), and a QUIC sender's work is per packet
(framing, encryption, loss recovery, a system call each): a larger datagram
moves more bytes for the same work. Sending one the path cannot carry would
lose it, again and again, so a size is used only once a datagram of that
size has been *acknowledged*: once its handshake is done the connection sends
probes, a PING padded to the size tried, one at a time, and searches between
the largest size acknowledged and the smallest lost (twice: a probe may be lost to
congestion like any datagram).

The search is bounded above by the least of what the operator allows
(``--http3-max-datagram``), what the client says it accepts (its
``max_udp_payload_size`` transport parameter) and what the route to the
client carries as the kernel knows it (its MTU, less the IP and UDP headers).
A probe is never counted against the congestion window, and its loss is not
taken for congestion (RFC 9000 14.4): the search costs a dozen datagrams at
most. Should the client's address change, the search begins again at 1,200.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

#: What every QUIC path carries (RFC 9000 14): where each connection begins.
BASE_SIZE = 1200
#: The largest datagram sent: aioquic writes a frame's length in two bytes (a variable-length
#: integer of at most 16,383), and a frame may fill its datagram.
MAX_SIZE = 16383
#: The search stops once the largest size acknowledged and the smallest lost are this close.
RESOLUTION = 64
#: Times a size is tried before it is taken as too large: a probe may be lost to congestion
#: like any datagram (RFC 8899 5.1.2).
ATTEMPTS = 2
#: Probes one search sends, at most.
MAX_PROBES = 24
#: A probe neither acknowledged nor declared lost in this long is taken as lost.
PROBE_TIMEOUT = 0.5
#: Linux's socket options for a connected socket's path MTU (Python names only some).
IP_MTU = getattr(socket, "IP_MTU", 14)
IPV6_MTU = getattr(socket, "IPV6_MTU", 24)


def route_limit(host: str) -> int | None:
    """The largest UDP payload the route to ``host`` carries as the kernel knows it: the
    route's MTU less the IP and UDP headers; None where the kernel does not say."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    v6 = address.version == 6
    try:
        # Connecting a UDP socket sends nothing: it chooses the route, whose MTU it reads.
        with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((str(address), 9))
            if v6:
                mtu = probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)
            else:
                mtu = probe.getsockopt(socket.IPPROTO_IP, IP_MTU)
    except OSError:
        return None
    return mtu - (48 if v6 else 28)


class PathSearch:
    """The search for one connection's datagram size.

    :attr:`size` is the size to send at: the largest acknowledged so far. The
    connection asks :meth:`next_probe` whenever it sends; it reports each
    probe's fate to :meth:`acknowledged` or :meth:`lost`.
    """

    def __init__(self, ceiling: int) -> None:
        #: The size in use: proved by an acknowledgement.
        self.size = BASE_SIZE
        #: The smallest size known not to pass (or one past the ceiling).
        self.too_large = max(ceiling, BASE_SIZE) + 1
        #: The probe under way, if any, and when it is taken as lost.
        self.probing: int | None = None
        self.deadline = 0.0
        self.probes = 0
        #: A size lost once, to be tried again.
        self.retry: int | None = None

    @property
    def done(self) -> bool:
        return self.probing is None and (
            self.too_large - self.size <= RESOLUTION or self.probes >= MAX_PROBES
        )

    def next_probe(self, now: float, timeout: float = PROBE_TIMEOUT) -> int | None:
        """The size to probe now, or None (one is under way, or the search is done)."""
        if self.probing is not None:
            if now < self.deadline:
                return None
            self.lost(self.probing)
        if self.done:
            return None
        # The ceiling first (most paths carry what their route's MTU says), then halves.
        if self.retry is not None:
            size = self.retry
        elif self.probes == 0:
            size = self.too_large - 1
        else:
            size = (self.size + self.too_large) // 2
        self.probes += 1
        self.probing = size
        self.deadline = now + timeout
        return size

    def acknowledged(self, size: int) -> None:
        """A datagram of ``size`` bytes reached the client (late or not: it is proof)."""
        if size == self.probing:
            self.probing = None
        if size > self.size:
            self.size = size
            self.too_large = max(self.too_large, size + 1)
        if self.retry is not None and self.retry <= self.size:
            self.retry = None

    def lost(self, size: int) -> None:
        """A probe of ``size`` bytes was lost (or not acknowledged in time)."""
        if size == self.probing:
            self.probing = None
        if not self.size < size < self.too_large:
            return  # already known either way
        if self.retry != size and ATTEMPTS > 1:
            self.retry = size
            return
        self.retry = None
        self.too_large = size
