"""Structured logging: one JSON object per line, with the event's fields as keys.

Components log ``log.info("watch reconnected", extra=fields(kind="Subnet", delay=0.4))`` and
operators get lines a log pipeline can index without parsing prose.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

_FIELDS = "hybridnet_fields"


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` argument that attaches key/value fields to a log record."""
    return {_FIELDS: values}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str = "info") -> None:
    """Send JSON lines to stderr; entry points call this once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
