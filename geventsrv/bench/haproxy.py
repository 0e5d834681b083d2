"""Run HAProxy (Debian's ``haproxy``) in TCP mode in front of geventsrv servers.

Used by the lab (TLS between a balancer and geventsrv) and the tests (a real
peer for the PROXY protocol and health checks). One process in the
foreground (``-db``), one frontend on loopback, one backend; its stats socket
answers :meth:`HAProxy.server_status`. The configuration is checked with
``haproxy -c`` first, so a mistake is one clear error, not a silent exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CONFIG = """\
global
    stats socket {stats} mode 600 level admin
    nbthread {threads}

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend front
    bind {front_host}:{front_port}
    default_backend geventsrv

backend geventsrv
    balance {balance}
{checks}{servers}"""


class HAProxyError(RuntimeError):
    """HAProxy is missing, refused its configuration, or did not start."""


@dataclass(frozen=True)
class Backend:
    """One server line: its address and HAProxy's options for it.

    ``options`` go on the line as written, e.g. ``send-proxy-v2``,
    ``ssl verify none``, ``check inter 300ms check-send-proxy``.
    """

    address: tuple[str, int]
    options: str = ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (HAProxy needs a number; another process could take it first)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def render(
    backends: Sequence[Backend],
    front: tuple[str, int],
    stats: Path,
    checks: str = "",
    balance: str = "roundrobin",
    threads: int = 1,
) -> str:
    """The configuration text; ``checks`` are backend lines such as ``option tcp-check``."""
    servers = "".join(
        f"    server s{number} {_address(b.address)} {b.options}".rstrip() + "\n"
        for number, b in enumerate(backends, 1)
    )
    return CONFIG.format(
        stats=stats,
        threads=threads,
        front_host=front[0],
        front_port=front[1],
        balance=balance,
        checks="".join(f"    {line}\n" for line in checks.splitlines() if line.strip()),
        servers=servers,
    )


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HAProxy:
    """A running haproxy; stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(
        self,
        directory: Path,
        backends: Sequence[Backend],
        checks: str = "",
        binary: str | None = None,
        threads: int = 1,
        balance: str = "roundrobin",
    ) -> None:
        binary = binary or shutil.which("haproxy")
        if binary is None:
            raise HAProxyError("haproxy is not installed (Debian: apt-get install haproxy)")
        # Absolute: HAProxy reads a relative "stats socket" path as an address.
        self.stats = directory.resolve() / "haproxy-stats.sock"
        self.front = ("127.0.0.1", free_port())
        config = directory / "haproxy.cfg"
        config.write_text(
            render(backends, self.front, self.stats, checks, balance=balance, threads=threads)
        )
        checked = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise HAProxyError(
                f"haproxy refused its configuration:\n{checked.stdout}{checked.stderr}"
            )
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while not self._accepts():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise HAProxyError(f"haproxy did not start: {self._stderr()}")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        try:
            socket.create_connection(self.front, timeout=1).close()
        except OSError:
            return False
        return True

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()[-2000:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def server_status(self, name: str = "s1") -> str:
        """A backend server's state as HAProxy's checks see it: ``UP``, ``DOWN``, ``no check``..."""
        for fields in self.stat_rows():
            if fields.get("svname") == name:
                return fields["status"]
        raise HAProxyError(f"no server {name} in haproxy's stats")

    def stat_rows(self) -> list[dict[str, str]]:
        """Every row of ``show stat`` (frontend, servers, backend) as a dict by column."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats))
            sock.sendall(b"show stat\n")
            text = b""
            while chunk := sock.recv(65536):
                text += chunk
        header, *rows = text.decode().splitlines()
        columns = header.lstrip("# ").split(",")
        return [dict(zip(columns, row.split(","), strict=False)) for row in rows if row]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.stats.unlink(missing_ok=True)

    def __enter__(self) -> HAProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
