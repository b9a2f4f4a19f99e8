"""Log output of ``authbus dev`` and ``serve``: text for people, one JSON object a line for
log pipelines (``AUTHBUS_LOG_FORMAT=json``).

Every line written while a request is answered carries its correlation id.  Nothing here
adds request data: authbus logs names, ids, outcomes and timings, never bodies or headers
other than the correlation id, so no secret can reach a log (checked suite-wide by
tests/secret_scan.py).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from authbus.handlers.wire import correlation_id

FORMATS = ("text", "json")
# Extra fields a record may carry (``log.info(..., extra={...})``) that JSON lines keep.
FIELDS = ("endpoint", "outcome", "duration_ms", "position")


class Correlated(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "correlation_id", None):
            line["correlation_id"] = record.correlation_id  # type: ignore[attr-defined]
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        cid = getattr(record, "correlation_id", None)
        return f"{text} [{cid}]" if cid else text


def configure(format: str = "text", level: str = "info") -> None:
    """Route authbus's (and its libraries') log records to standard error."""
    if format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Correlated())
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries: warnings and up
    logging.getLogger("authbus").setLevel(level.upper())
