"""Who may connect, and how much of the server one client may take.

Everything here is decided per *client*: an IPv4 address, or an IPv6 network
of ``/64`` by default (one host usually holds a whole /64, so counting single
IPv6 addresses would let it take the server with addresses it owns anyway).
An IPv4 client of a dual-stack socket (``::ffff:10.1.2.3``) is its IPv4 address.

* :class:`AccessList`: ``--allow``/``--deny`` with ncat's semantics: a denied
  address is refused; with any ``--allow``, only allowed addresses are served;
  deny wins over allow.
* :class:`ClientCounts`: connections open per client, for ``--max-conns-per-client``.
* :class:`TokenBuckets`: a rate per client (``--accept-rate-per-client``,
  ``--udp-rate-per-client``), with a burst, in a table of bounded size: a flood
  of spoofed sources cannot grow it without bound, and a source not seen for a
  while is forgotten with a full bucket.

No gevent, no sockets: decisions on addresses, cheap enough for the accept loop.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geventsrv.stats import Refusal

#: A network of ``--allow``, ``--deny`` or ``--proxy-allow-from``.
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: An IP address as :func:`client_ip` returns it.
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Sources a rate table remembers at most; the least recently seen go first.
MAX_TRACKED = 65536


@functools.lru_cache(maxsize=4096)
def client_ip(host: str) -> IPAddress:
    """The address a socket reports (``fe80::1%eth0``, ``::ffff:1.2.3.4``...) as an IP.

    Cached: parsing costs microseconds, and a client that reconnects (or
    storms) asks again for the same address.
    """
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_key(ip: IPAddress, ipv6_prefix: int = 64) -> str:
    """The client ``ip`` counts as: itself for IPv4, its ``/ipv6_prefix`` network for IPv6."""
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.ip_network((ip, ipv6_prefix), strict=False))


class AccessList:
    """``--allow``/``--deny``: :meth:`permits` an address or not (ncat's rules)."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allow
        )
        self.deny: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in deny)

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def permits(self, ip: IPAddress) -> bool:
        if any(ip in network for network in self.deny):
            return False
        return not self.allow or any(ip in network for network in self.allow)


class ClientCounts:
    """Connections open per client key, against a ``limit`` (0: none)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def take(self, key: str) -> bool:
        """Count one more connection for ``key``; ``False`` (nothing counted) past the limit."""
        count = self.open.get(key, 0)
        if self.limit and count >= self.limit:
            return False
        self.open[key] = count + 1
        return True

    def give_back(self, key: str) -> None:
        count = self.open[key] - 1
        if count:
            self.open[key] = count
        else:
            del self.open[key]


class TokenBuckets:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    :meth:`allow` spends one token of ``key``'s bucket, or says no. The table
    holds at most ``max_tracked`` keys, dropping the least recently seen: a
    forgotten key comes back with a full bucket, which costs at most one burst.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self.clock = clock
        #: key -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str) -> bool:
        now = self.clock()
        buckets = self._buckets
        tokens, then = buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(buckets) > self.max_tracked:
            buckets.popitem(last=False)
        return allowed


def parse_rate(text: str) -> tuple[float, float]:
    """``RATE`` or ``RATE:BURST`` (per second) -> ``(rate, burst)``; burst defaults to 2x rate.

    Raises ``ValueError`` with a message for the user.
    """
    rate_text, _, burst_text = text.partition(":")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(1.0, 2 * rate)
    except ValueError:
        raise ValueError(f"must be RATE or RATE:BURST per second, got {text!r}") from None
    if not (0 <= rate < float("inf") and 1 <= burst < float("inf")):
        raise ValueError(f"rate must be 0 or more and burst at least 1, got {text!r}")
    return rate, burst


class Gate:
    """The decisions at a new connection's door, in order: access list, accept rate, count.

    :meth:`admit` says why a client is refused (``"denied"``, ``"rate"``,
    ``"limit"``) or ``None``, and the key counted for it, which :meth:`release`
    gives back when the connection closes. With ``spare_loopback``, loopback
    clients are not counted against the per-client limit (the default limit
    spares them: on loopback every local client is the same address).
    """

    def __init__(
        self,
        access: AccessList,
        per_client_limit: int = 0,
        accept_rate: tuple[float, float] | None = None,
        ipv6_prefix: int = 64,
        spare_loopback: bool = False,
    ) -> None:
        self.access = access
        self.counts = ClientCounts(per_client_limit)
        self.accept_rate = TokenBuckets(*accept_rate) if accept_rate else None
        self.ipv6_prefix = ipv6_prefix
        self.spare_loopback = spare_loopback

    @property
    def active(self) -> bool:
        return self.access.active or bool(self.counts.limit) or self.accept_rate is not None

    def admit(self, host: str) -> tuple[Refusal | None, str | None]:
        """``(refusal, key)`` for a client at ``host``; ``key`` is ``None`` when refused."""
        try:
            ip = client_ip(host)
        except ValueError:  # not an IP (a Unix socket): nothing to judge it by
            return None, None
        if not self.access.permits(ip):
            return "denied", None
        key = client_key(ip, self.ipv6_prefix)
        if self.accept_rate is not None and not self.accept_rate.allow(key):
            return "rate", None
        if self.spare_loopback and ip.is_loopback:
            return None, None
        if not self.counts.take(key):
            return "limit", None
        return None, key

    def release(self, key: str) -> None:
        self.counts.give_back(key)
