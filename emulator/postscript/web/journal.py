"""The journal of API requests behind `GET /_emulator/requests`.

It keeps the latest `journal_size` entries (100,000 by default), and no more than
MAX_JOURNAL_CHARS of their paths and queries together; older ones are forgotten. A
path or query longer than MAX_PATH_CHARS / MAX_QUERY_CHARS keeps its beginning and a
marker with its length (`TRUNCATED`), so a client sending 60 KB URLs cannot make the
journal hold them whole. Admin calls and `/openapi.json` are not journaled; neither
are bodies or headers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from postscript_audience_lab.emulator.postscript.model.subscriber import format_time, utc_now
from postscript_audience_lab.emulator.postscript.web.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    is_api_request,
)

__all__ = ["MAX_JOURNAL_CHARS", "MAX_PATH_CHARS", "MAX_QUERY_CHARS", "Journal", "JournalMiddleware"]

# The engine's longest lookup is 6,000 characters of email values (sync.lookup), under
# 8 KB once encoded; real servers refuse request lines much past 8 KiB.
MAX_QUERY_CHARS = 8192
MAX_PATH_CHARS = 2048
MAX_JOURNAL_CHARS = 64 * 1024 * 1024  # of paths and queries, over every entry kept
TRUNCATED = "…[{:,} characters; the journal keeps the first {:,}]"


def bounded(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and a marker giving its whole length."""
    return text if len(text) <= limit else text[:limit] + TRUNCATED.format(len(text), limit)


class Journal:
    def __init__(self, size: int, max_chars: int = MAX_JOURNAL_CHARS) -> None:
        self._entries: deque[tuple[dict[str, Any], int]] = deque()
        self._size = size
        self._max_chars = max_chars
        self._chars = 0  # of the paths and queries kept
        self._lock = threading.Lock()
        self.total = 0  # every request since start or reset, including forgotten ones

    def append(self, entry: dict[str, Any]) -> None:
        chars = len(entry["path"]) + len(entry["query"])
        with self._lock:
            self._entries.append((entry, chars))
            self._chars += chars
            self.total += 1
            while len(self._entries) > self._size or self._chars > self._max_chars:
                self._chars -= self._entries.popleft()[1]

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            entries = [entry for entry, _ in self._entries]
        # times are formatted on read: the journal is written on every request
        return [{**entry, "time": format_time(entry["time"])} for entry in entries]

    def snapshot(self) -> list[dict[str, Any]]:
        """The entries kept, oldest first, unformatted (`time` a datetime): for readers that
        page through them, such as the web inbox, without formatting all 100,000."""
        with self._lock:
            return [entry for entry, _ in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries = deque()  # a new one: the old blocks go at once
            self._chars = 0
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
                    "path": bounded(scope["path"], MAX_PATH_CHARS),
                    "query": bounded(
                        bytes(scope["query_string"]).decode("latin-1"), MAX_QUERY_CHARS
                    ),
                    # a dropped connection has no status the client could see
                    "status": None if fault == "timeout" else status,
                    "time": received,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "fault": fault,
                }
            )
