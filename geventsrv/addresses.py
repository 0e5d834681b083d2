"""Addresses as users write them and as sockets take them: ``[::1]:7007`` and ``("::1", 7007)``.

No imports from the rest of the package, so that every module may use it.
"""

from __future__ import annotations


def strip_brackets(host: str) -> str:
    """``[::1]`` (as addresses are printed) -> ``::1`` (as sockets take them)."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def format_address(host: str, port: int) -> str:
    """``host:port`` as users write it, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
