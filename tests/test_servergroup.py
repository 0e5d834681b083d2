"""Several listeners in one process: each with its own mode, TLS and UDP, one limit, one
set of metrics, one drain. Real processes, real sockets, a real TLS client."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import threading

from support import CLIENT_TIMEOUT, connect, free_port, recv_exactly, scraped, wait_until

from geventsrv.testing.process import parse_listening


def addresses(server) -> dict[str, tuple[str, int]]:
    """Each listener's address by the mode and front its "listening" line names."""
    found = {}
    for line in server.stderr.splitlines():
        address = parse_listening(line)
        if address is not None:
            found[line[line.index("(mode=") + 6 : line.rindex(")")]] = address
    return found


def listening(server, count: int) -> list[tuple[str, int]]:
    """The first ``count`` listeners' addresses, once each has said it listens."""

    def found() -> list[tuple[str, int]]:
        lines = [parse_listening(line) for line in server.stderr.splitlines()]
        return [address for address in lines if address is not None]

    assert wait_until(lambda: len(found()) >= count, timeout=20), server.stderr
    return found()[:count]


def reflect(address, context=None, path="/"):
    if context is None:
        client = http.client.HTTPConnection(address[0], address[1], timeout=CLIENT_TIMEOUT)
    else:
        client = http.client.HTTPSConnection(
            "localhost", address[1], timeout=CLIENT_TIMEOUT, context=context
        )
    try:
        client.request("GET", path)
        reply = client.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        client.close()


def test_http_https_and_echo_with_udp_from_one_process(start_server, certs):
    metrics_port = free_port()
    server = start_server(
        "--mode", "http",
        "--listen", f"0,tls-cert={certs.server_cert},tls-key={certs.server_key}",
        "--listen", "0,mode=echo,udp",
        "--metrics", f"127.0.0.1:{metrics_port}",
    )  # fmt: skip
    server.wait_for_log(r"\(mode=echo, tcp and udp\)")
    found = addresses(server)
    assert set(found) == {"http", "http, tls", "echo, tcp and udp"}
    status, plain = reflect(found["http"], path="/plain")
    assert (status, plain["tls"]) == (200, None)
    status, secure = reflect(found["http, tls"], certs.client_context(), path="/secure")
    assert status == 200 and secure["tls"]["version"].startswith("TLS")
    with connect(found["echo, tcp and udp"]) as sock:
        sock.sendall(b"tcp echo")
        assert recv_exactly(sock, 8) == b"tcp echo"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(CLIENT_TIMEOUT)
        udp.sendto(b"udp echo", found["echo, tcp and udp"])
        assert udp.recvfrom(100)[0] == b"udp echo"
    samples = scraped(metrics_port)
    # One set of metrics: every listener's connections, both HTTP listeners' requests.
    assert samples[("geventsrv_connections_accepted_total", ())] == 3
    requests = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "geventsrv_http_requests_total"
    }
    assert sum(requests.values()) == 2
    assert samples[("geventsrv_udp_datagrams_echoed_total", ())] == 1
    assert server.stop() == 0
    assert "stopped: 3 connection(s) served" in server.stderr


def test_max_conns_counts_every_listener(start_server):
    server = start_server("--max-conns", "2", "--listen", "0")
    first, second = listening(server, 2)
    held = [connect(first), connect(first)]
    for sock in held:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"  # both slots taken, on the first listener
    waiting = connect(second)
    waiting.sendall(b"queued")
    waiting.settimeout(0.5)
    with contextlib.suppress(TimeoutError):  # waiting in the backlog, as it should
        assert waiting.recv(10) == b"", "a third connection was served past --max-conns 2"
    held[0].close()
    waiting.settimeout(CLIENT_TIMEOUT)
    assert recv_exactly(waiting, 6) == b"queued"
    waiting.close()
    held[1].close()


def test_one_signal_drains_every_listener_with_its_transfers_whole(start_server, rng):
    server = start_server("--drain-timeout", "20", "--listen", "0,mode=upper")
    echo, upper = listening(server, 2)
    payload = rng.randbytes(1 << 20).replace(b"\n", b" ")
    socks = [connect(echo), connect(upper)]
    for sock in socks:
        sock.sendall(payload[:1000])
        recv_exactly(sock, 1000)  # both connections open and served
    server.send_signal(signal.SIGTERM)
    server.wait_for_log(r"received: shutting down")
    results: list[bytes] = [b"", b""]

    def finish(index: int) -> None:
        sock = socks[index]
        sender = threading.Thread(target=sock.sendall, args=(payload[1000:],))
        sender.start()
        results[index] = recv_exactly(sock, len(payload) - 1000)
        sender.join()
        sock.close()

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [payload[1000:], payload[1000:].upper()]
    assert server.wait(20) == 0
    assert "stopped: 2 connection(s) served" in server.stderr
    for host, port in (echo, upper):  # each listener says it stops, naming itself
        assert f"stopping {host}:{port}: no longer accepting; 1 connection(s) open" in server.stderr
    assert ", 0 closed at shutdown" in server.stderr


def test_workers_serve_every_listener(start_server):
    ports = free_port(), free_port()
    server = start_server(
        "--workers", "2", "--port", str(ports[0]), "--listen", f"{ports[1]},mode=upper"
    )
    listening(server, 4)  # two listeners in each of two workers
    for port, expected in zip(ports, (b"mixed Case", b"MIXED CASE"), strict=True):
        with connect(("127.0.0.1", port)) as sock:
            sock.sendall(b"mixed Case")
            assert recv_exactly(sock, 10) == expected
    assert server.stop() == 0
