"""The cluster's hosts: real namespaces, a bridge and servers in them, then nothing left."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys

import pytest
from support import require_tool

from geventsrv.bench import hosts
from geventsrv.testing.process import GEVENTSRV, ServerProcess


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_free_subnet_skips_every_range_in_use_and_ignores_the_default_route():
    first = net(hosts.CANDIDATES[0])
    assert hosts.free_subnet([net("0.0.0.0/0"), net("127.0.0.0/8")]) == first
    # An address inside the first candidate, or a wider route over it, rules it out.
    assert hosts.free_subnet([net(f"{first.network_address + 5}/32")]) != first
    taken = hosts.free_subnet([net("10.213.0.0/16")])
    assert not taken.overlaps(net("10.213.0.0/16"))
    with pytest.raises(hosts.NetworkError, match="already in use"):
        hosts.free_subnet([net("10.0.0.0/8")])


def test_loopback_hosts_are_distinct_loopback_addresses():
    with hosts.open_network("loopback", 3) as network:
        assert network.addresses == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
        assert network.command(1, ["true"]) == ["true"]


def test_this_machines_own_networks_are_seen():
    require_tool("ip", "iproute2")
    assert any(item.overlaps(net("127.0.0.0/8")) for item in hosts.used_networks())


@pytest.fixture
def can_make_namespaces():
    require_tool("ip", "iproute2")
    if why := hosts.namespaces_unavailable():
        pytest.skip(why)


def test_namespaced_hosts_reach_each_other_and_nothing_else(can_make_namespaces):
    with hosts.open_network("netns", 2) as network:
        assert isinstance(network, hosts.NamespaceNetwork) and network.kind == "netns"
        subnet = ipaddress.IPv4Network(f"{network.gateway}/24", strict=False)
        assert all(ipaddress.IPv4Address(a) in subnet for a in network.addresses)
        server = ServerProcess(
            "--host", network.addresses[0], "--port", "7007",
            command=network.command(0, GEVENTSRV),
        ).wait_listening()  # fmt: skip
        try:
            with socket.create_connection((network.addresses[0], 7007), timeout=5) as sock:
                sock.sendall(b"from the bridge")
                assert sock.recv(64) == b"from the bridge"
            peer = (
                "import socket\n"
                f"s = socket.create_connection(('{network.addresses[0]}', 7007), timeout=5)\n"
                "s.sendall(b'from host 2'); print(s.recv(64).decode())\n"
            )
            reply = subprocess.run(
                network.command(1, [sys.executable, "-c", peer]),
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert reply.stdout.strip() == "from host 2", reply.stderr
        finally:
            server.stop()
        routes = subprocess.run(
            ["ip", "-n", network.namespaces[1], "route"], capture_output=True, text=True
        ).stdout
        assert "default" not in routes and routes.strip(), routes  # the /24 only
    assert [name for _, name, pid in hosts.created() if pid == os.getpid()] == []


def test_a_dead_runs_namespaces_are_removed_by_the_next(can_make_namespaces):
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{hosts.PREFIX}-{dead.pid}-0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in hosts.remove_leftovers()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert name not in listed
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
