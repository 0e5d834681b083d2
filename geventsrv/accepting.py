"""How the accept loop meets ``accept()`` failures: sorted by errno, paced, logged sparingly.

One connection's trouble (reset while queued) is retried at once; running out
of descriptors or memory backs off, doubling, and logs at most one line per
interval; a broken listening socket ends the loop. The decisions live here,
apart from the loop, so they can be tested without a failing socket.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

# The accept loop's own logger: these lines are about the server's accept loop.
log = logging.getLogger("geventsrv.server")

#: accept() errors that concern only the connection being accepted (it was
#: reset or aborted while queued): take the next one at once. Linux also
#: reports pending network errors of the new socket this way (accept(2)).
ACCEPT_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "EINTR",
        "EAGAIN",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
)
#: accept() errors that mean the process or system is out of a resource:
#: retrying at once would spin, so back off until descriptors or memory free.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors that mean the listening socket itself is gone.
ACCEPT_FATAL_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})


class RateLimitedLog:
    """Logs the first of a run of similar events at once, then at most one per interval.

    A line written after others were held back says how many.
    """

    def __init__(
        self,
        interval: float,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.logger = logger
        self.clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def __call__(self, level: int, message: str, *args: object) -> None:
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar suppressed)"
            args += (self._suppressed,)
        self.logger.log(level, message, *args)
        self._next = now + self.interval
        self._suppressed = 0


class AcceptErrors:
    """Sorts ``accept()`` failures and paces the retries.

    :meth:`failed` says how long to wait before the next ``accept()``: 0 for
    a failure of one queued connection, a back-off doubling from
    ``backoff_min`` to ``backoff_max`` while the process is out of
    descriptors or memory, ``None`` when the listening socket is gone.
    :meth:`succeeded` ends a back-off.
    """

    def __init__(
        self,
        backoff_min: float,
        backoff_max: float,
        log_line: RateLimitedLog,
        by_errno: dict[str, int] | None = None,
    ) -> None:
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.log_line = log_line
        self.backoff = 0.0
        #: Failures that were not about one queued connection.
        self.count = 0
        #: Every failure, by errno name (``EMFILE``, ``ECONNABORTED``...).
        self.by_errno: dict[str, int] = {} if by_errno is None else by_errno

    def failed(self, exc: OSError, open_connections: int) -> float | None:
        code = exc.errno
        name = errno.errorcode.get(code or 0, str(code))
        self.by_errno[name] = self.by_errno.get(name, 0) + 1
        if code in ACCEPT_TRANSIENT_ERRNOS:
            log.debug("accept() of one connection failed: %s", exc)
            return 0.0
        self.count += 1
        if code in ACCEPT_FATAL_ERRNOS:
            log.error("listening socket failed: %s; stopping", exc)
            return None
        self.backoff = min(max(self.backoff * 2, self.backoff_min), self.backoff_max)
        self.log_line(
            logging.WARNING,
            "accept() failed: %s (%d connection(s) open); retrying in %g s",
            exc.strerror or exc,
            open_connections,
            self.backoff,
        )
        return self.backoff

    def succeeded(self) -> None:
        if self.backoff:
            log.info("accepting again")
            self.backoff = 0.0
