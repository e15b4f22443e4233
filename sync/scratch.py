"""A run's scratch database: private, temporary, never the state file (docs/design/reconcile.md).

What one `pslab reconcile` must hold while it plans (a snapshot's members, the shop's
listing, the changes planned) can be as large as the snapshot or the shop. It goes to a
database SQLite makes for an empty file name: on disk past a page cache of
`CACHE_KIB`, readable by this connection alone, deleted when it closes. Memory then stays
flat whatever the input's size. The state file's SQL stays in `sync.ledger`; this module
opens nothing else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

__all__ = ["ScratchDatabase", "ScratchHolder"]

CACHE_KIB = 16 * 1024

Params = Sequence[Any]


class ScratchDatabase:
    """One private temporary SQLite database with its `schema`; close it to delete it."""

    def __init__(self, schema: Iterable[str]) -> None:
        self._db = sqlite3.connect("", isolation_level=None)  # "": private, deleted on close
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        for statement in schema:
            self._db.execute(statement)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def run(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def run_many(self, sql: str, rows: Iterable[Params]) -> None:
        """`sql` once per row, in one transaction."""
        with self.transaction():
            self._db.executemany(sql, rows)

    def one(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def rows(self, sql: str, params: Params = ()) -> Iterator[Any]:
        """The rows, read as they are iterated."""
        yield from self._db.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


class ScratchHolder:
    """What keeps its rows in a `ScratchDatabase` (`_db`): used as a context manager, or
    closed, it deletes them."""

    _db: ScratchDatabase

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
