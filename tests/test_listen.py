"""Binding, in-process: TCP and UDP on one port, port 0, and errors that name the address."""

from __future__ import annotations

import socket

import pytest

from geventsrv.config import Config
from geventsrv.listen import ListenError, open_listener, open_sockets


def test_port_0_gets_one_port_for_tcp_and_udp():
    sockets = open_sockets(Config(port=0, udp=True))
    try:
        assert sockets.tcp is not None and sockets.udp is not None
        port = sockets.address[1]
        assert sockets.tcp.getsockname()[1] == sockets.udp.getsockname()[1] == port != 0
        assert sockets.udp.type == socket.SOCK_DGRAM
    finally:
        sockets.close()


def test_udp_only_opens_no_listener():
    sockets = open_sockets(Config(port=0, tcp=False, udp=True))
    try:
        assert sockets.tcp is None and sockets.udp is not None
    finally:
        sockets.close()


def test_a_port_in_use_names_the_address():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: address"):
            open_listener(Config(port=port))


def test_udp_port_in_use_says_udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=rf"127.0.0.1:{port} \(udp\)"):
            open_sockets(Config(port=port, tcp=False, udp=True))


def test_an_unknown_host_is_a_listen_error():
    with pytest.raises(ListenError, match=r"no-such-host\.invalid"):
        open_listener(Config(host="no-such-host.invalid", port=0))


def test_bound_only_with_reuse_port_lets_a_second_socket_share_the_port():
    """What the supervisor does: reserve a port, then workers bind it too."""
    reservation = open_listener(Config(port=0, reuse_port=True), listen=False)
    try:
        port = reservation.getsockname()[1]
        worker = open_listener(Config(port=port, reuse_port=True))
        worker.close()
    finally:
        reservation.close()


def test_a_backlog_past_somaxconn_is_capped_not_refused():
    """listen() takes a C int; any backlog Config accepts is capped at net.core.somaxconn."""
    import shutil
    import subprocess

    from geventsrv.config import MAX_BACKLOG
    from geventsrv.listen import somaxconn

    listener = open_listener(Config(port=0, backlog=MAX_BACKLOG))
    try:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        if shutil.which("ss"):
            shown = subprocess.run(
                ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10
            ).stdout.split()
            assert int(shown[2]) == somaxconn(), shown  # Send-Q of a listener: its backlog
    finally:
        listener.close()
