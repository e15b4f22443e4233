"""Structured logs for `pslab serve`: one JSON object per line on stderr (docs/design/service.md).

A record's message is the name of what happened (`intake_refused`,
`drain_failed`, …) and its fields come in `extra={"fields": {...}}`. Nothing
logged may carry the secret key or a shopper's phone or email: the service logs
counts, statuses and its own reasons, never an event, and every text that
comes from elsewhere (an API error, a library's message) is passed through
`redact` first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = ["SERVING_SHOP", "JsonLines", "log_to_stderr", "redact"]

# The name of the shop whose request or drain this is, where a process serves many
# (docs/design/service.md#many-shops); each record then carries it as "shop".
SERVING_SHOP: ContextVar[str | None] = ContextVar("SERVING_SHOP", default=None)

# An email, or a run of 7+ digits with the separators people type in phone numbers.
_EMAIL = re.compile(r"[^\s\"'<>(),;:@]+@[^\s\"'<>(),;:@]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d(?:[\s\-().]*\d){6,}")


def redact(text: str) -> str:
    """`text` with anything that looks like an email or a phone number masked."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


class JsonLines(logging.Formatter):
    """`{"time", "level", "logger", "event", ...fields}` as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        shop = SERVING_SHOP.get()
        if shop is not None:
            line["shop"] = shop
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            failure = record.exc_info[1]
            line["error"] = redact(f"{type(failure).__name__}: {failure}")
        return json.dumps(line, default=str)


def log_to_stderr(level: int = logging.INFO) -> None:
    """Send every logger's records (uvicorn's too) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for chatty in ("httpx", "httpcore"):  # a line per Postscript call is not an event of note
        logging.getLogger(chatty).setLevel(logging.WARNING)
