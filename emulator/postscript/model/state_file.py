"""`--state FILE`: each shop's subscribers and events kept in SQLite across restarts.

Written through on every mutation (one transaction each), read once at start.
The request journal, the fault settings and the shops (their keywords
included) are not kept. A file
written before the emulator had several shops (tables `subscribers` and
`events`) is moved, once, to the tables below under the default shop.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["StateFile"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shop_subscribers (
    shop TEXT NOT NULL,
    id TEXT NOT NULL,
    ps_id INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (shop, id)
);
CREATE TABLE IF NOT EXISTS shop_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    shop TEXT NOT NULL,
    doc TEXT NOT NULL
);
"""


class StateFile:
    def __init__(self, path: Path, legacy_shop: str) -> None:
        """Open (or create) the file; rows of a single-shop file belong to `legacy_shop`."""
        self.path = path
        self._lock = threading.Lock()
        try:
            # Subscribers' phones and emails: a new file is its owner's alone (SQLite gives its
            # -wal and -shm files the same mode).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._adopt_single_shop_tables(legacy_shop)
        except (sqlite3.DatabaseError, OSError) as error:
            raise ValueError(
                f"cannot use {path} as the emulator's state file ({error}); "
                "give a new path or delete the file"
            ) from error

    def _adopt_single_shop_tables(self, shop: str) -> None:
        tables = {
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not {"subscribers", "events"} <= tables:
            return
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO shop_subscribers (shop, id, ps_id, doc) "
                "SELECT ?, id, ps_id, doc FROM subscribers",
                (shop,),
            )
            self._db.execute(
                "INSERT INTO shop_events (shop, doc) SELECT ?, doc FROM events ORDER BY seq",
                (shop,),
            )
            self._db.execute("DROP TABLE subscribers")
            self._db.execute("DROP TABLE events")

    def shops(self) -> list[str]:
        """Every shop the file holds subscribers or events of."""
        with self._lock:
            rows = self._db.execute(
                "SELECT shop FROM shop_subscribers UNION SELECT shop FROM shop_events ORDER BY 1"
            ).fetchall()
        return [shop for (shop,) in rows]

    def load(self, shop: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self._lock:
            subscribers = [
                json.loads(doc)
                for (doc,) in self._db.execute(
                    "SELECT doc FROM shop_subscribers WHERE shop = ? ORDER BY ps_id", (shop,)
                )
            ]
            events = [
                json.loads(doc)
                for (doc,) in self._db.execute(
                    "SELECT doc FROM shop_events WHERE shop = ? ORDER BY seq", (shop,)
                )
            ]
        return subscribers, events

    def save_subscribers(self, shop: str, docs: list[dict[str, Any]]) -> None:
        rows = [(shop, doc["id"], doc["ps_id"], json.dumps(doc)) for doc in docs]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO shop_subscribers (shop, id, ps_id, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (shop, id) DO UPDATE SET ps_id = excluded.ps_id, doc = excluded.doc",
                rows,
            )

    def delete_subscriber(self, shop: str, subscriber_id: str) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "DELETE FROM shop_subscribers WHERE shop = ? AND id = ?", (shop, subscriber_id)
            )

    def save_event(self, shop: str, event: dict[str, Any]) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO shop_events (shop, doc) VALUES (?, ?)", (shop, json.dumps(event))
            )

    def replace_events(self, shop: str, events: list[dict[str, Any]]) -> None:
        """Rewrite a shop's events in order (a redaction changes stored events)."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM shop_events WHERE shop = ?", (shop,))
            self._db.executemany(
                "INSERT INTO shop_events (shop, doc) VALUES (?, ?)",
                [(shop, json.dumps(event)) for event in events],
            )

    def clear(self, shop: str) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM shop_subscribers WHERE shop = ?", (shop,))
            self._db.execute("DELETE FROM shop_events WHERE shop = ?", (shop,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> sqlite3.Connection:
        # isolation_level=None means autocommit; `with connection` alone does not begin.
        self._db.execute("BEGIN")
        return self._db
