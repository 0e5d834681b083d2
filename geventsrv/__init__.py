"""geventsrv: a TCP echo server in plain blocking-socket code, made concurrent by gevent.

Importing this package does not monkey-patch anything, and imports nothing
heavy until a name is used: ``python -m geventsrv`` must be able to patch
before ``socket``, ``ssl`` or ``threading`` are loaded. A program that uses the
API patches first, as every gevent program does::

    from gevent import monkey; monkey.patch_all()
    from geventsrv import Config, EchoServer

    with EchoServer(Config(port=0)) as server:
        print(server.address)
        server.serve_forever()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "geventsrv.config",
    "ConfigError": "geventsrv.config",
    "EchoServer": "geventsrv.server",
    "ListenError": "geventsrv.listen",
    "NotPatchedError": "geventsrv.server",
    "serve": "geventsrv.service",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from geventsrv.config import Config as Config
    from geventsrv.config import ConfigError as ConfigError
    from geventsrv.listen import ListenError as ListenError
    from geventsrv.server import EchoServer as EchoServer
    from geventsrv.server import NotPatchedError as NotPatchedError
    from geventsrv.service import serve as serve


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'geventsrv' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
