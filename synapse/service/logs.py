"""Structured logs: one JSON object per line on standard error, for the service and for uvicorn.

Events carry their fields in `extra={"fields": {...}}`. Nothing here ever sees request headers, so
tokens cannot reach a log line; callers log a token's configured name, never the token.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

LOGGER = logging.getLogger("synapse.service")
_RESERVED = frozenset({"time", "level", "logger", "event", "error"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():  # a field never overwrites the line's own keys
                doc[f"{key}_" if key in _RESERVED else key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type and message only: a traceback is for a debugger, not for the plant's log.
            doc["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str = "info") -> None:
    """Route every logger (ours and uvicorn's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def event(name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    LOGGER.log(level, name, extra={"fields": fields})
