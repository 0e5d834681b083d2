"""``python -m geventsrv``: parse the flags, set up logging, run the server, give the exit code.

The process must already be monkey-patched (``geventsrv/__main__.py`` and the
``geventsrv`` console script do it first). Every problem a user can cause
ends in one line on stderr and a documented exit code (:mod:`geventsrv.exitcodes`),
never a traceback.

Exit codes
    ``0`` clean shutdown; ``1`` unexpected internal error; ``2`` bad flags,
    values or TLS files; ``3`` cannot listen (address in use, not available, no permission,
    unknown host); ``4`` a second signal forced the shutdown before open
    connections had drained.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from geventsrv import exitcodes
from geventsrv.config import ConfigError
from geventsrv.flags import PROG, fail, parse_config
from geventsrv.listen import ListenError
from geventsrv.listeners import listener_configs
from geventsrv.logs import configure_logging
from geventsrv.metrics import require_prometheus
from geventsrv.server import NotPatchedError
from geventsrv.service import serve
from geventsrv.supervisor import supervise
from geventsrv.tls import server_context


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server as the command line asks; returns the process exit code.

    The process must already be monkey-patched (``python -m geventsrv`` does it).
    """
    config = parse_config(argv)
    configure_logging(config.log_level, config.worker_id, config.log_format)
    try:
        server_context(config)  # judge the TLS files before anything is bound
        for spec, listener in zip(config.listen, listener_configs(config), strict=True):
            try:
                server_context(listener)
            except ConfigError as exc:
                raise ConfigError("listen", f"{spec!r}: {exc.problem}") from None
        if config.metrics is not None or config.metrics_socket is not None:
            require_prometheus()
        if config.workers > 1 and os.environ.get("LISTEN_PID") == str(os.getpid()):
            raise ConfigError(
                "workers",
                "socket activation hands its sockets to one process: use --workers 1 "
                "(for more cores, one service instance per CPU)",
            )
        if config.workers > 1:
            return supervise(config)
        return serve(config)
    except ConfigError as exc:
        fail(exc)
    except ListenError as exc:
        print(f"{PROG}: error: {exc.strerror}", file=sys.stderr)
        return exitcodes.CANNOT_LISTEN
    except NotPatchedError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exitcodes.INTERNAL_ERROR
    except KeyboardInterrupt:  # interrupted before the signal handlers were in place
        return exitcodes.FORCED
