"""Log lines for people (``--log-format text``) or for machines (``json``, one object a line).

Every logger of the package writes to stderr through one handler. In JSON,
each line holds ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
``logger``, ``message``, ``worker`` under a supervisor, and the structured
fields a line carries (``extra=``): the access log's ``client``,
``duration``, ``received``, ``sent`` and ``reason``, for one.
"""

from __future__ import annotations

import json
import logging
import sys
import time

#: Attributes every LogRecord has; anything else on a record came in ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, fields as the module says."""

    def __init__(self, worker_id: int = 0) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker_id:
            fields["worker"] = self.worker_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                fields[key] = value
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


def configure_logging(level: str, worker_id: int = 0, log_format: str = "text") -> None:
    """Log to stderr at ``level``, as text (timestamp, level, worker, logger) or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(worker_id))
    else:
        worker = f"worker {worker_id} " if worker_id else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {worker}%(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
