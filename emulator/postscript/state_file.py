"""`--state FILE`: subscribers and events kept in SQLite across restarts.

Written through on every mutation (one transaction each), read once at start.
The request journal and the fault settings are not kept.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["StateFile"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    id TEXT PRIMARY KEY,
    ps_id INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL
);
"""


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise ValueError(
                f"cannot use {path} as the emulator's state file ({error}); "
                "give a new path or delete the file"
            ) from error

    def load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self._lock:
            subscribers = [
                json.loads(doc)
                for (doc,) in self._db.execute("SELECT doc FROM subscribers ORDER BY ps_id")
            ]
            events = [
                json.loads(doc)
                for (doc,) in self._db.execute("SELECT doc FROM events ORDER BY seq")
            ]
        return subscribers, events

    def save_subscribers(self, docs: list[dict[str, Any]]) -> None:
        rows = [(doc["id"], doc["ps_id"], json.dumps(doc)) for doc in docs]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO subscribers (id, ps_id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET ps_id = excluded.ps_id, doc = excluded.doc",
                rows,
            )

    def save_event(self, event: dict[str, Any]) -> None:
        with self._lock, self._transaction():
            self._db.execute("INSERT INTO events (doc) VALUES (?)", (json.dumps(event),))

    def clear(self) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM subscribers")
            self._db.execute("DELETE FROM events")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> sqlite3.Connection:
        # isolation_level=None means autocommit; `with connection` alone does not begin.
        self._db.execute("BEGIN")
        return self._db
