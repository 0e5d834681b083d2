"""The exit codes of every geventsrv command, named once.

The server, its supervisor and the worker processes speak the same codes, so
the supervisor can tell "this worker cannot run at all" (usage, cannot listen)
from "it died" without a bare number anywhere.
"""

from __future__ import annotations

#: Clean shutdown (or, for a tool, the job done).
OK = 0
#: An unexpected internal error: a bug. For the client: the connection failed.
INTERNAL_ERROR = 1
#: Bad flags, values or environment: one line on stderr says which.
USAGE = 2
#: The server cannot listen (address in use or unavailable, no permission,
#: unknown host); the client cannot connect.
CANNOT_LISTEN = 3
#: A second signal forced the shutdown before open connections had drained.
FORCED = 4
#: The lab could not set up what it measures (HAProxy would not start, a host
#: did not come up): nothing was measured, unlike 1, a target missed.
SETUP_FAILED = 3
#: Conventional for a command stopped by Ctrl-C (128 + SIGINT): it says what
#: it stopped, in one line, and ends with this.
INTERRUPTED = 130
#: Conventional for a process stopped by SIGPIPE (128 + 13): what a command
#: returns when its reader closed standard output early (``| head``).
BROKEN_PIPE = 141

#: Codes with which a worker says it cannot run at all: restarting it would
#: fail the same way, so the supervisor stops instead.
CANNOT_RUN = frozenset({USAGE, CANNOT_LISTEN})

# The client's names for the codes it shares with the server.
CONNECTION_FAILED = INTERNAL_ERROR
CANNOT_CONNECT = CANNOT_LISTEN
