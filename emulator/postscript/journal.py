"""The journal of API requests behind `GET /_emulator/requests`.

It keeps the latest `journal_size` entries (100,000 by default); older ones
are forgotten. Admin calls and `/openapi.json` are not journaled.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from postscript_audience_lab.emulator.postscript.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    is_api_request,
)
from postscript_audience_lab.emulator.postscript.subscriber import format_time, utc_now

__all__ = ["Journal", "JournalMiddleware"]


class Journal:
    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.total = 0  # every request since start or reset, including forgotten ones

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)
            self.total += 1

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries)
        # times are formatted on read: the journal is written on every request
        return [{**entry, "time": format_time(entry["time"])} for entry in entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0


class JournalMiddleware:
    def __init__(self, app: ASGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_request(scope):
            await self.app(scope, receive, send)
            return
        received = utc_now()
        started = time.perf_counter()
        status: int | None = None

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            fault = scope.get("pslab.fault")
            self.journal.append(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": bytes(scope["query_string"]).decode("latin-1"),
                    # a dropped connection has no status the client could see
                    "status": None if fault == "timeout" else status,
                    "time": received,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "fault": fault,
                }
            )
