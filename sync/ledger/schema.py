"""The state file's schema: its tables, their version, and the migrations between versions.

The schema has a version, SQLite's `user_version` in the file's header, and `MIGRATIONS`
bring an older file up to `SCHEMA_VERSION` in order when it is opened, each in one
transaction together with its new version number: a run killed during a migration leaves the
file at the version before it, which the next run migrates again. A file whose version is
newer than this release knows is refused and left byte for byte as it was
(docs/design/commands.md#state-file-schema). Files of releases before the version existed
(0.1.0) are version 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postscript_audience_lab.sync.errors import StateVersionError
from postscript_audience_lab.sync.ledger.rows import Status

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "schema_version"]

# The tables of schema version 1: those of 0.1.0, which created them without a version. "IF
# NOT EXISTS" lets migration 1 complete a 0.1.0 file that lacks a table added during 0.1.0.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS winners (
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    audience_key TEXT NOT NULL,
    audience_id TEXT,
    member INTEGER NOT NULL,
    ts TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (phone, email, audience_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS winners_by_status ON winners (status, phone, email);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY,
    subscriber_id TEXT NOT NULL,
    changes TEXT NOT NULL,
    patch TEXT,
    patched INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS intent_events (
    intent_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    posted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (intent_id, seq)
);
CREATE TABLE IF NOT EXISTS applied (
    subscriber_id TEXT NOT NULL,
    audience_key TEXT NOT NULL,
    ts TEXT NOT NULL,
    message_id TEXT NOT NULL,
    member INTEGER NOT NULL,
    PRIMARY KEY (subscriber_id, audience_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identities (
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    via TEXT NOT NULL,
    PRIMARY KEY (phone, email)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    line INTEGER,
    reason TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS floors (
    audience_key TEXT PRIMARY KEY,
    ts TEXT NOT NULL,
    message_id TEXT NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: `apply` takes the file from `version - 1` to `version`.

    It runs inside the transaction that also records `version`, so it must not commit:
    plain statements only (`executescript` would commit first).
    """

    version: int
    summary: str
    apply: Callable[[sqlite3.Connection], None]


def _create_v1_tables(db: sqlite3.Connection) -> None:
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)


# The counters of schema version 2, each kept by triggers in the transaction that changes
# what it counts. `winners:<status>` counts rows of `winners`; the rejections' bytes are those
# of their stored event and reason, as UTF-8.
WINNERS_COUNTER = "winners:"
REJECTIONS_KEPT, REJECTION_BYTES, REJECTIONS_DROPPED = (
    "rejections",
    "rejection_bytes",
    "rejections_dropped",
)
INTENTS = "intents"
REJECTION_SIZE = "length(CAST({0}.event AS BLOB)) + length(CAST({0}.reason AS BLOB))"
SCHEMA_V2 = (  # one statement each: a trigger's body holds semicolons
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TRIGGER winner_counted AFTER INSERT ON winners BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'winners:' || new.status;
END""",
    """CREATE TRIGGER winner_moved AFTER UPDATE OF status ON winners
WHEN old.status IS NOT new.status BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'winners:' || old.status;
    UPDATE counters SET value = value + 1 WHERE name = 'winners:' || new.status;
END""",
    """CREATE TRIGGER winner_uncounted AFTER DELETE ON winners BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'winners:' || old.status;
END""",
    f"""CREATE TRIGGER rejection_counted AFTER INSERT ON rejections BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'rejections';
    UPDATE counters SET value = value + {REJECTION_SIZE.format("new")}
    WHERE name = 'rejection_bytes';
END""",
    f"""CREATE TRIGGER rejection_uncounted AFTER DELETE ON rejections BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'rejections';
    UPDATE counters SET value = value - ({REJECTION_SIZE.format("old")})
    WHERE name = 'rejection_bytes';
END""",
    """CREATE TRIGGER intent_counted AFTER INSERT ON intents BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'intents';
END""",
    """CREATE TRIGGER intent_uncounted AFTER DELETE ON intents BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'intents';
END""",
)


def _add_counters(db: sqlite3.Connection) -> None:
    """Version 2: the counters, started from one count of what the file holds."""
    for statement in SCHEMA_V2:
        db.execute(statement)
    db.executemany(
        "INSERT INTO counters (name, value) VALUES (?, 0)",
        [(WINNERS_COUNTER + status,) for status in Status]
        + [(name,) for name in (REJECTIONS_KEPT, REJECTION_BYTES, REJECTIONS_DROPPED, INTENTS)],
    )
    db.execute(
        "UPDATE counters SET value = (SELECT COUNT(*) FROM winners "
        "WHERE 'winners:' || status = counters.name) WHERE name LIKE 'winners:%'"
    )
    db.execute(
        "UPDATE counters SET value = (SELECT COUNT(*) FROM rejections) WHERE name = ?",
        (REJECTIONS_KEPT,),
    )
    db.execute(
        f"UPDATE counters SET value = (SELECT COALESCE(SUM({REJECTION_SIZE.format('r')}), 0) "
        "FROM rejections AS r) WHERE name = ?",
        (REJECTION_BYTES,),
    )
    db.execute(
        "UPDATE counters SET value = (SELECT COUNT(*) FROM intents) WHERE name = ?", (INTENTS,)
    )


# In order; each one's version is one more than the one before. New files run them all.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of 0.1.0, with a schema version from now on", _create_v1_tables),
    Migration(2, "counters kept by triggers, for /status without table scans", _add_counters),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

SQLITE_MAGIC = b"SQLite format 3\x00"
USER_VERSION_OFFSET = 60  # of the 100-byte database header, a big-endian 32-bit integer


def schema_version(path: Path) -> int | None:
    """The schema version in the state file's header, read without opening it as a database
    (which could change it); None for a file that is empty or is not an SQLite file.

    The header can lag behind a write-ahead log left by a crash; `Ledger.open` checks the
    version again once connected.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        return None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return None
    return int.from_bytes(header[USER_VERSION_OFFSET : USER_VERSION_OFFSET + 4], "big")


def _refuse_newer(path: Path, found: int) -> None:
    if found > SCHEMA_VERSION:
        raise StateVersionError(
            f"the state file {path} has schema version {found}, newer than version "
            f"{SCHEMA_VERSION}, the newest this pslab ({_release()}) reads: it was written by "
            "a newer release. Upgrade postscript-audience-lab, or pass another --state; "
            "the file was left unchanged"
        )


def _release() -> str:
    from postscript_audience_lab import __version__

    return __version__


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the open file up to SCHEMA_VERSION, one migration per transaction."""
    for migration in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
            _refuse_newer(path, found)
            if found < migration.version:
                if found != migration.version - 1:
                    raise StateVersionError(
                        f"the state file {path} has schema version {found}, and migration "
                        f"{migration.version} expects {migration.version - 1}"
                    )
                migration.apply(db)
                db.execute(f"PRAGMA user_version = {int(migration.version)}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


# What one drain's lookups found, on the ledger's connection only (SQLite's temp schema).
DRAIN_SCRATCH = """
CREATE TEMP TABLE IF NOT EXISTS resolved (
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    PRIMARY KEY (phone, email)
);
CREATE TEMP TABLE IF NOT EXISTS fetched (
    subscriber_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    read_at REAL NOT NULL
);
DELETE FROM temp.resolved;
DELETE FROM temp.fetched;
"""
