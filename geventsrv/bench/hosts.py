"""Where the cluster's "hosts" live: network namespaces on a bridge, or loopback addresses.

A host is one geventsrv reachable at its own address. Two placements, same
interface (:class:`Network`):

* :class:`NamespaceNetwork` (root and iproute2): each host is a network
  namespace joined by a veth pair to a bridge, with an address from a private
  /24 chosen among ranges that no address or route on this machine touches.
  The bridge holds the .1 address, so processes here (HAProxy, locust) reach
  the hosts; the namespaces have no default route, so nothing in them can
  reach anywhere else, and nothing is routed out. Every namespace, link and
  address is removed by :meth:`NamespaceNetwork.close`; leftovers of a run
  that was killed are removed by the next one.
* :class:`LoopbackNetwork`: host N is ``127.0.1.N``, on this machine's
  loopback. Nothing to create or remove.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import TypeVar

PREFIX = "gsc"  # names of everything this module creates start with it
#: Private ranges tried, in order, for the hosts' /24.
CANDIDATES = [f"10.{second}.{third}.0/24" for second in (213, 147) for third in range(0, 256, 7)]


class NetworkError(RuntimeError):
    """The namespaces could not be made (the message says why)."""


_Network = TypeVar("_Network", bound="Network")


class Network:
    """Addresses for ``count`` hosts and how to run a command on each."""

    kind = "none"
    #: The address the hosts see connections from (HAProxy's and locust's side).
    gateway = "127.0.0.1"

    def __init__(self, count: int) -> None:
        self.count = count
        self.addresses: list[str] = []

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        """``argv`` made to run on host ``host`` (0-based)."""
        return list(argv)

    def close(self) -> None:
        """Remove whatever was created (safe to call more than once)."""

    def __enter__(self: _Network) -> _Network:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LoopbackNetwork(Network):
    kind = "loopback"

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.addresses = [f"127.0.1.{number}" for number in range(1, count + 1)]


def _ip(*args: str, namespace: str | None = None) -> str:
    argv = ["ip", *(("-n", namespace) if namespace else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def namespaces_unavailable() -> str | None:
    """Why namespaces cannot be used here, or ``None`` if they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command is missing (Debian: apt-get install iproute2)"
    return None


def _remove(kind: str, name: str) -> None:
    """``ip KIND del NAME`` (``netns`` or ``link``); it may be gone already: no error."""
    subprocess.run(["ip", kind, "del", name], capture_output=True)


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an address or a route on this machine covers."""
    text = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show", "table", "all")
    found = []
    for word in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", text):
        try:
            found.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return found


def free_subnet(used: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first candidate /24 that overlaps nothing in ``used``."""
    for text in CANDIDATES:
        candidate = ipaddress.IPv4Network(text)
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return candidate
    raise NetworkError("every candidate private /24 is already in use on this machine")


def created() -> list[tuple[str, str, int]]:
    """Every namespace and link named by this module: ``(kind, name, pid of its run)``,
    kind ``netns`` or ``link``."""
    found = []
    for line in _ip("netns", "list").splitlines():
        match = re.match(rf"({PREFIX}-(\d+)-\d+)(\s|$)", line)
        if match:
            found.append(("netns", match.group(1), int(match.group(2))))
    for match in re.finditer(rf"^\d+: ({PREFIX}(\d+)[a-z0-9]*)[@:]", _ip("-o", "link"), re.M):
        found.append(("link", match.group(1), int(match.group(2))))
    return found


def remove_leftovers() -> list[str]:
    """Remove namespaces and links of earlier runs whose process is gone; their names."""
    removed = []
    for kind, name, pid in created():
        if not _alive(pid):
            _remove(kind, name)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


class NamespaceNetwork(Network):
    """A bridge here, one namespace per host, a private /24 between them."""

    kind = "netns"

    def __init__(self, count: int) -> None:
        super().__init__(count)
        if why := namespaces_unavailable():
            raise NetworkError(why)
        if count > 200:
            raise NetworkError("at most 200 hosts")
        remove_leftovers()
        tag = f"{os.getpid()}"
        self.bridge = f"{PREFIX}{tag}"
        self.namespaces = [f"{PREFIX}-{tag}-{number}" for number in range(count)]
        self.links = [f"{PREFIX}{tag}h{number}" for number in range(count)]
        if max(len(name) for name in [self.bridge, *self.links]) > 15:
            raise NetworkError("interface names would exceed 15 characters")
        self.subnet = free_subnet(used_networks())
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self.addresses = [str(hosts[10 + number]) for number in range(count)]
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        prefix = self.subnet.prefixlen
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        places = zip(self.namespaces, self.links, self.addresses, strict=True)
        for namespace, link, address in places:
            _ip("netns", "add", namespace)
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", link, "master", self.bridge)
            _ip("link", "set", link, "up")
            _ip("addr", "add", f"{address}/{prefix}", "dev", "eth0", namespace=namespace)
            _ip("link", "set", "eth0", "up", namespace=namespace)
            _ip("link", "set", "lo", "up", namespace=namespace)

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def close(self) -> None:
        for namespace in self.namespaces:
            # Deleting a namespace removes its end of the veth pair, and so the pair.
            _remove("netns", namespace)
        for link in [*self.links, self.bridge]:
            _remove("link", link)
        self.namespaces = []
        self.links = []


def open_network(kind: str, count: int) -> Network:
    """``kind``: ``netns``, ``loopback`` or ``auto`` (namespaces where possible)."""
    if kind == "loopback":
        return LoopbackNetwork(count)
    if kind == "auto" and namespaces_unavailable():
        return LoopbackNetwork(count)
    return NamespaceNetwork(count)
