"""The engine's memory between runs: one SQLite file (the `--state` of docs/design.md §6).

Tables:
- `seen`        every accepted messageId (duplicates are recognised across runs);
- `winners`     the greatest version per (identity, audience) and whether it is
                `pending` (not yet written), `parked` (no subscriber yet) or `done`;
- `intents`     planned writes not yet confirmed (the crash journal of design §4.4),
                with `intent_events`, each marked once posted;
- `applied`     per (subscriber, audience) the version the engine last settled,
                so a stale event arriving through another identity changes nothing;
- `identities`  the identity -> subscriber cache (written by `sync.lookup`);
- `rejections`  rejected events with their reasons, per run; the latest ones only,
                within `RejectionLimits` (rows and bytes), the oldest dropped first;
- `floors`      per audience, the version of the newest full snapshot reconciled
                (`sync.reconcile`): every older change of that audience is stale;
- `meta`        the shop the state belongs to;
- `counters`    rows of `winners` per status, the rejections kept (rows and bytes) and
                dropped, and the journaled intents: kept by triggers in the transaction
                that changes those tables, so `/status` reads them instead of counting.

The schema has a version, SQLite's `user_version` in the file's header, and `MIGRATIONS`
bring an older file up to `SCHEMA_VERSION` in order when it is opened, each in one
transaction together with its new version number: a run killed during a migration leaves the
file at the version before it, which the next run migrates again. A file whose version is
newer than this release knows is refused and left byte for byte as it was (docs/design.md
§6, "The state file's schema"). Files of releases before the version existed (0.1.0) are
version 0.

One process at a time: an exclusive `flock` on the database file itself, taken on
open, so a symlink or a hard link to the same file meets the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from postscript_audience_lab.sync.errors import StateLockedError, StateVersionError
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, Version, format_instant
from postscript_audience_lab.sync.plan import Plan

__all__ = [
    "KEEP_REJECTIONS",
    "KEEP_REJECTION_BYTES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Counts",
    "Identity",
    "IngestCounts",
    "Intent",
    "Ledger",
    "Migration",
    "Outcome",
    "RejectionLimits",
    "Status",
    "copy_state",
    "hold_lock",
    "schema_version",
    "stored_event",
]

INGEST_TRANSACTION_ROWS = 5000
PRIVATE_FILE_MODE = 0o600  # files that hold phones and emails are created for their owner only
MAX_STORED_EVENT_CHARS = 2000  # of a rejected event's JSON, in the state and the rejects file
MAX_STORED_REASON_CHARS = 1000
# Past either limit of `RejectionLimits`, the oldest rejections are dropped until both are
# this share of the limit below it, so that a steady stream prunes once per that many rows.
PRUNE_MARGIN = 1 / 16
KEEP_REJECTIONS = 10_000  # the defaults of `RejectionLimits` (and of --keep-rejections…)
KEEP_REJECTION_BYTES = 16 * 1024 * 1024

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


class Status(StrEnum):
    """Where a row of `winners` stands; the values are the strings the state file stores."""

    PENDING = "pending"  # not yet written
    PARKED = "parked"  # no subscriber yet; each run makes it pending again
    DONE = "done"  # settled: applied, or superseded by a newer version
    REFUSED = "refused"  # Postscript refused the write (a 400); the reason is in `rejections`


OPEN_STATUSES = (Status.PENDING, Status.PARKED)  # what a run still has to work off


@dataclass(frozen=True, order=True)
class Identity:
    """Who a change is about, as the events said it: phone (E.164) and/or email."""

    phone: str | None
    email: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.phone or "", self.email or "")

    @property
    def name(self) -> str:
        """The identity key (design §5, §9): phone, else email."""
        return self.phone or self.email or ""


class Outcome(StrEnum):
    """What storing one parsed event did (the HTTP intake answers it per event)."""

    ACCEPTED = "accepted"  # the newest version known for its identity and audience
    DUPLICATE = "duplicate"  # its messageId was seen before
    STALE = "stale"  # older than the version already known
    REJECTED = "rejected"  # failed design §3; the reason is kept in `rejections`


@dataclass
class IngestCounts:
    """What one ingest did with its input."""

    received: int = 0
    duplicates: int = 0
    stale: int = 0
    rejected: int = 0
    accepted: int = 0


@dataclass(frozen=True)
class RejectionLimits:
    """How many rejections the state file keeps: at most `rows`, and at most `bytes` of
    stored event and reason text (UTF-8). Past either, the oldest are dropped (and counted).

    The defaults keep enough to see what is being rejected and why (a stored event is at most
    MAX_STORED_EVENT_CHARS, its reason MAX_STORED_REASON_CHARS), while a destination that
    forwards a whole source of non-audience events leaves a state file of tens of MB, not one
    that grows with every event: 10,000 rows of typical 1 KB events, or some 5,500 of the
    largest kind before the 16 MiB cap binds.
    """

    rows: int = KEEP_REJECTIONS
    bytes: int = KEEP_REJECTION_BYTES


@dataclass(frozen=True)
class Counts:
    """The counters (schema version 2): read in one query, never by counting rows."""

    by_status: dict[Status, int]
    rejections: int  # kept in the state file
    rejection_bytes: int
    rejections_dropped: int  # since the counters began: dropped to keep within the limits
    intents: int  # journaled writes not yet confirmed


@dataclass(frozen=True)
class Intent:
    """A journaled write: the changes it settles, its PATCH, its events and their progress."""

    id: int
    subscriber_id: str
    winners: list[AudienceChange]
    superseded: list[AudienceChange]
    patch: dict[str, Any] | None
    patched: bool
    events: list[tuple[int, dict[str, Any], bool]] = field(default_factory=list)


class Ledger:
    """The SQLite state file; open it with `with Ledger(path) as ledger:`."""

    def __init__(self, path: Path, limits: RejectionLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or RejectionLimits()
        self._lock_file: IO[bytes] | None = None
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = hold_lock(self.path)
        assert lock is not None, "hold_lock creates the file unless told not to"
        self._lock_file = lock
        try:
            # Before SQLite touches it: a newer file must stay byte for byte as it is.
            _refuse_newer(self.path, schema_version(self.path) or 0)
            db = sqlite3.connect(self.path, isolation_level=None)
        except BaseException:
            self.close()
            raise
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db, self.path)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def synced_commits(self) -> Iterator[None]:
        """Commits in the block reach the disk before they return, so a power loss keeps
        them too; outside it (synchronous=NORMAL) a commit survives a process crash only.
        For events whose sender is told they are stored (design §11)."""
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "the ledger is not open"
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- ingest -------------------------------------------------------------

    def start_run(self) -> int:
        """Number a new run (its rejections are told apart from earlier runs' by it)."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at) VALUES (?)",
                (datetime.now().astimezone().isoformat(),),
            )
            assert cursor.lastrowid is not None
        return cursor.lastrowid

    def record(
        self,
        results: Iterable[AudienceChange | Rejection],
        run: int,
        outcomes: list[Outcome] | None = None,
    ) -> IngestCounts:
        """Store parsed events: dedupe, keep the winner per (identity, audience).

        Committed when it returns; `outcomes`, when given, gets one entry per result, in order.
        """
        counts = IngestCounts()
        db = self.db
        rows = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for result in results:
                counts.received += 1
                if isinstance(result, Rejection):
                    counts.rejected += 1
                    outcome = Outcome.REJECTED
                    self._keep_rejection(run, result.line, result.reason, result.event)
                elif not _insert_seen(db, result.version.message_id):
                    counts.duplicates += 1
                    outcome = Outcome.DUPLICATE
                elif _upsert_winner(db, result, Status.PENDING):
                    counts.accepted += 1
                    outcome = Outcome.ACCEPTED
                else:
                    counts.stale += 1
                    outcome = Outcome.STALE
                if outcomes is not None:
                    outcomes.append(outcome)
                rows += 1
                if rows % INGEST_TRANSACTION_ROWS == 0:
                    db.execute("COMMIT")
                    db.execute("BEGIN IMMEDIATE")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return counts

    def rejections(self, run: int) -> Iterator[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT line, reason, event FROM rejections WHERE run = ? ORDER BY id", (run,)
        )
        for line, reason, event in cursor:
            yield {"line": line, "reason": reason, "event": json.loads(event)}

    # -- drain ----------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def has_work(self) -> bool:
        """Anything to write: pending or parked changes, or an unfinished intent."""
        row = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM winners WHERE status IN (?, ?)) "
            "OR EXISTS (SELECT 1 FROM intents)",
            OPEN_STATUSES,
        ).fetchone()
        return bool(row[0])

    def unpark(self) -> int:
        """Parked changes become pending again (each run retries them)."""
        sql = "UPDATE winners SET status = ? WHERE status = ?"
        return self.db.execute(sql, (Status.PENDING, Status.PARKED)).rowcount

    def pending_identities(self, page: int = 500) -> Iterator[Identity]:
        """Every identity with a pending change, in key order; safe while rows change status."""
        last = ("", "")
        first = True
        while True:
            rows = self.db.execute(
                "SELECT DISTINCT phone, email FROM winners WHERE status = ? "
                "AND (? OR (phone, email) > (?, ?)) ORDER BY phone, email LIMIT ?",
                (Status.PENDING, first, *last, page),
            ).fetchall()
            if not rows:
                return
            for phone, email in rows:
                yield Identity(phone or None, email or None)
            last = rows[-1]
            first = False

    def pending_changes(self, identities: Iterable[Identity]) -> list[AudienceChange]:
        changes: list[AudienceChange] = []
        for identity in identities:
            cursor = self.db.execute(
                "SELECT audience_key, audience_id, member, ts, message_id FROM winners "
                "WHERE phone = ? AND email = ? AND status = ?",
                (*identity.key, Status.PENDING),
            )
            for key, audience_id, member, ts, message_id in cursor:
                changes.append(
                    AudienceChange(
                        identity.phone,
                        identity.email,
                        key,
                        audience_id,
                        bool(member),
                        Version(datetime.fromisoformat(ts), message_id),
                    )
                )
        return changes

    def park(self, identities: Iterable[Identity]) -> int:
        parked = 0
        with self.transaction() as db:
            for identity in identities:
                parked += db.execute(
                    "UPDATE winners SET status = ? WHERE phone = ? AND email = ? AND status = ?",
                    (Status.PARKED, *identity.key, Status.PENDING),
                ).rowcount
        return parked

    def applied_versions(self, subscriber_id: str) -> dict[str, Version]:
        """Per audience, the version a change must beat: what the engine last settled for
        this subscriber, or the audience's snapshot floor when that is newer."""
        cursor = self.db.execute(
            "SELECT audience_key, ts, message_id FROM applied WHERE subscriber_id = ?",
            (subscriber_id,),
        )
        versions = {key: Version(datetime.fromisoformat(ts), mid) for key, ts, mid in cursor}
        for key, (floor, _digest) in self.floors().items():
            if key not in versions or versions[key] < floor:
                versions[key] = floor
        return versions

    def floors(self) -> dict[str, tuple[Version, str]]:
        """Per audience reconciled from a full snapshot: its version, and its contents' digest."""
        cursor = self.db.execute("SELECT audience_key, ts, message_id, digest FROM floors")
        return {
            key: (Version(datetime.fromisoformat(ts), mid), digest)
            for key, ts, mid, digest in cursor
        }

    def raise_floor(self, audience_key: str, version: Version, digest: str) -> bool:
        """A full snapshot of the audience as of `version` is stored: from now on every change
        of the audience older than it is stale, for every subscriber. Only ever raised."""
        cursor = self.db.execute(
            "INSERT INTO floors (audience_key, ts, message_id, digest) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (audience_key) DO UPDATE SET ts = excluded.ts, "
            "message_id = excluded.message_id, digest = excluded.digest "
            "WHERE (excluded.ts, excluded.message_id) > (floors.ts, floors.message_id)",
            (audience_key, format_instant(version.timestamp), version.message_id, digest),
        )
        return cursor.rowcount == 1

    def begin_intent(self, plan: Plan) -> int:
        """Journal a planned write before any of it reaches Postscript."""
        changes = {
            "winners": [_change_dict(change) for change in plan.winners.values()],
            "superseded": [_change_dict(change) for change in plan.stale],
        }
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO intents (subscriber_id, changes, patch) VALUES (?, ?, ?)",
                (plan.subscriber_id, _dump_json(changes), _dump_json(plan.patch_properties)),
            )
            intent_id = cursor.lastrowid
            assert intent_id is not None
            db.executemany(
                "INSERT INTO intent_events (intent_id, seq, body) VALUES (?, ?, ?)",
                [(intent_id, seq, _dump_json(body)) for seq, body in enumerate(plan.events)],
            )
        return intent_id

    def mark_patched(self, intent_id: int) -> None:
        self.db.execute("UPDATE intents SET patched = 1 WHERE id = ?", (intent_id,))

    def mark_posted(self, intent_id: int, seq: int) -> None:
        self.db.execute(
            "UPDATE intent_events SET posted = 1 WHERE intent_id = ? AND seq = ?", (intent_id, seq)
        )

    def unfinished_intents(self) -> list[Intent]:
        intents = []
        for intent_id, subscriber_id, changes, patch, patched in self.db.execute(
            "SELECT id, subscriber_id, changes, patch, patched FROM intents ORDER BY id"
        ).fetchall():
            events = [
                (seq, json.loads(body), bool(posted))
                for seq, body, posted in self.db.execute(
                    "SELECT seq, body, posted FROM intent_events WHERE intent_id = ? ORDER BY seq",
                    (intent_id,),
                )
            ]
            settled = json.loads(changes)
            intents.append(
                Intent(
                    intent_id,
                    subscriber_id,
                    _load_changes(settled["winners"]),
                    _load_changes(settled["superseded"]),
                    json.loads(patch),
                    bool(patched),
                    events,
                )
            )
        return intents

    def settle(
        self,
        subscriber_id: str,
        winners: Iterable[AudienceChange],
        superseded: Iterable[AudienceChange] = (),
        intent_id: int | None = None,
    ) -> None:
        """The write is confirmed: record what was applied, close the rows and the intent."""
        with self.transaction() as db:
            for change in winners:
                db.execute(
                    "INSERT INTO applied (subscriber_id, audience_key, ts, message_id, member) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (subscriber_id, audience_key) DO UPDATE "
                    "SET ts = excluded.ts, message_id = excluded.message_id, "
                    "member = excluded.member "
                    "WHERE (excluded.ts, excluded.message_id) > (applied.ts, applied.message_id)",
                    (subscriber_id, change.audience_key, *_version_row(change), change.member),
                )
                _close(db, change)
            for change in superseded:
                _close(db, change)
            if intent_id is not None:
                db.execute("DELETE FROM intent_events WHERE intent_id = ?", (intent_id,))
                db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def refuse(
        self,
        changes: Sequence[AudienceChange],
        reason: str,
        run: int,
        superseded: Iterable[AudienceChange] = (),
    ) -> None:
        """Postscript refused the write (a 400): keep the reason, stop retrying those rows.

        The changes the refused ones superseded are closed too: left pending, the
        next run would apply an older version in place of the refused newer one.
        """
        with self.transaction() as db:
            for change in changes:
                self._keep_rejection(run, None, reason, _change_dict(change))
                _close(db, change, status=Status.REFUSED)
            for change in superseded:
                _close(db, change)

    def record_refusal(self, body: object, reason: str, run: int) -> None:
        with self.transaction():
            self._keep_rejection(run, None, reason, body)

    def _keep_rejection(self, run: int, line: int | None, reason: str, event: object) -> None:
        """Store a rejection, inside the caller's transaction, and keep within the limits."""
        self.db.execute(
            "INSERT INTO rejections (run, line, reason, event) VALUES (?, ?, ?, ?)",
            (run, line, reason[:MAX_STORED_REASON_CHARS], stored_event(event)),
        )
        rows, size = self._rejection_totals()
        if rows > self.limits.rows or size > self.limits.bytes:
            self._prune_rejections(rows, size)

    def _rejection_totals(self) -> tuple[int, int]:
        row = self.db.execute(
            "SELECT (SELECT value FROM counters WHERE name = ?), "
            "(SELECT value FROM counters WHERE name = ?)",
            (REJECTIONS_KEPT, REJECTION_BYTES),
        ).fetchone()
        return int(row[0]), int(row[1])

    def _prune_rejections(self, rows: int, size: int) -> None:
        """Drop the oldest rejections until both totals are PRUNE_MARGIN below their limits,
        a batch at a time (sized from the mean row), and count what was dropped."""
        most_rows = self.limits.rows - int(self.limits.rows * PRUNE_MARGIN)
        most_bytes = self.limits.bytes - int(self.limits.bytes * PRUNE_MARGIN)
        dropped = 0
        while rows and (rows > most_rows or size > most_bytes):
            over_bytes = max(0, size - most_bytes)
            batch = max(1, rows - most_rows, math.ceil(over_bytes * rows / max(size, 1)))
            dropped += self.db.execute(
                "DELETE FROM rejections WHERE id IN "
                "(SELECT id FROM rejections ORDER BY id LIMIT ?)",
                (batch,),
            ).rowcount
            rows, size = self._rejection_totals()
        self.db.execute(
            "UPDATE counters SET value = value + ? WHERE name = ?", (dropped, REJECTIONS_DROPPED)
        )

    def count_pending_identities(self) -> int:
        return self._count_identities(Status.PENDING)

    def abandon_intent(self, intent_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM intent_events WHERE intent_id = ?", (intent_id,))
            db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def counts(self) -> Counts:
        """Rows per status, rejections kept and dropped, intents: from the counters, which
        triggers keep in step with the tables (a few rows read, whatever the file's size)."""
        values = dict(self.db.execute("SELECT name, value FROM counters").fetchall())
        return Counts(
            by_status={status: int(values[WINNERS_COUNTER + status]) for status in Status},
            rejections=int(values[REJECTIONS_KEPT]),
            rejection_bytes=int(values[REJECTION_BYTES]),
            rejections_dropped=int(values[REJECTIONS_DROPPED]),
            intents=int(values[INTENTS]),
        )

    def file_bytes(self) -> int:
        """The state file's size on disk, its write-ahead log included (two `stat` calls)."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def free_bytes(self) -> int:
        """Space inside the file that pruning freed and later rows will reuse."""
        pages = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return pages * int(self.db.execute("PRAGMA page_size").fetchone()[0])

    def parked_identities(self) -> int:
        return self._count_identities(Status.PARKED)

    def _count_identities(self, status: Status) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT phone, email FROM winners WHERE status = ?)",
            (status,),
        ).fetchone()
        return int(row[0])

    # -- lookup (one drain's scratch tables, and the lasting identity cache) ---

    def clear_lookups(self) -> None:
        """Start a drain with empty scratch tables (they live as long as the connection)."""
        self.db.executescript(DRAIN_SCRATCH)

    def remember_subscriber(
        self,
        subscriber: Mapping[str, Any],
        identities: Iterable[Identity],
        via: str,
        read_at: float,
    ) -> None:
        """Identities found as `subscriber`: for this drain, and in the lasting cache."""
        subscriber_id = str(subscriber["id"])
        rows = [(*identity.key, subscriber_id) for identity in identities]
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO temp.fetched (subscriber_id, body, read_at) "
                "VALUES (?, ?, ?)",
                (subscriber_id, _dump_json(subscriber), read_at),
            )
            db.executemany(
                "INSERT OR REPLACE INTO temp.resolved (phone, email, subscriber_id) "
                "VALUES (?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT INTO identities (phone, email, subscriber_id, via) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (phone, email) DO UPDATE SET "
                "subscriber_id = excluded.subscriber_id, via = excluded.via",
                [(*row, via) for row in rows],
            )

    def count_fetched(self) -> int:
        """Subscribers found in this drain."""
        return int(self.db.execute("SELECT COUNT(*) FROM temp.fetched").fetchone()[0])

    def fetched_after(
        self, subscriber_id: str, limit: int
    ) -> list[tuple[str, dict[str, Any], float]]:
        """The next `limit` subscribers found in this drain, by id: (id, body, read_at)."""
        rows = self.db.execute(
            "SELECT subscriber_id, body, read_at FROM temp.fetched WHERE subscriber_id > ? "
            "ORDER BY subscriber_id LIMIT ?",
            (subscriber_id, limit),
        ).fetchall()
        return [(found_id, json.loads(body), read_at) for found_id, body, read_at in rows]

    def resolved_to(self, subscriber_id: str) -> list[Identity]:
        """The identities this drain found to be `subscriber_id`, in key order."""
        cursor = self.db.execute(
            "SELECT phone, email FROM temp.resolved WHERE subscriber_id = ? ORDER BY phone, email",
            (subscriber_id,),
        )
        return [Identity(phone or None, email or None) for phone, email in cursor]

    def phone_unresolved(self, phone: str) -> bool:
        """Whether an identity with this phone has a pending change this drain has not
        looked up yet (its lookup, to come, will read that subscriber again)."""
        row = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM winners AS w WHERE w.phone = ? AND w.status = ? "
            "AND NOT EXISTS (SELECT 1 FROM temp.resolved AS r "
            "WHERE r.phone = w.phone AND r.email = w.email))",
            (phone, Status.PENDING),
        ).fetchone()
        return bool(row[0])


def hold_lock(path: Path, *, create: bool = True) -> IO[bytes] | None:
    """Take the state file's process lock: an exclusive `flock` on the database file itself.

    The lock belongs to the file, not to its name, so a second run that reaches the
    same file through a symlink or a hard link is refused too. (`flock` locks are
    apart from the byte-range locks SQLite takes, so the two never meet.) The holder's
    pid goes to `<resolved state path>.lock`, for the refusal message only. With
    `create=False` (a dry run) a missing state file is not created, nor the pid noted:
    there is nothing to lock, and None comes back.
    """
    handle: IO[bytes]
    try:
        if create:  # a new state file holds phones and emails: its owner's alone (SQLite's
            # -wal and -shm files take the same mode)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
            handle = os.fdopen(descriptor, "a+b")
        else:
            handle = open(path, "rb")  # noqa: SIM115 -- held for the run
    except FileNotFoundError:
        if create:
            raise
        return None
    pid_note = path.resolve().with_name(path.resolve().name + ".lock")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        pid, command = _read_holder(pid_note)
        raise StateLockedError(
            f"the state file {path} is in use by another {command} (pid {pid}); "
            "wait for it to finish or pass a different --state"
        ) from None
    if create:
        with contextlib.suppress(OSError):  # the note is a courtesy; the lock is the flock
            pid_note.write_text(f"{os.getpid()}\n{_this_command()}\n", encoding="ascii")
    return handle


def _this_command() -> str:
    """What holds the lock, for the refusal another process shows: `pslab serve` and the like."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    return f"pslab {command}" if command in ("sync", "serve", "reconcile") else "pslab process"


def _read_holder(note: Path) -> tuple[str, str]:
    """The pid and the command in a lock note (a note of 0.1.0 holds the pid alone)."""
    try:
        lines = note.read_text(encoding="ascii").split("\n")
    except (OSError, UnicodeDecodeError):
        return "unknown", "pslab process"
    pid = lines[0].strip()[:20] or "unknown"
    command = lines[1].strip()[:40] if len(lines) > 1 and lines[1].strip() else "pslab process"
    return pid, command


def copy_state(path: Path, copy: Path) -> None:
    """Copy the state file at `path`, if there is one, to `copy`, leaving no trace beside it.

    Reading a WAL database creates its `-wal` and `-shm` files when they are missing;
    those this copy created are removed again (the caller holds the state lock, so no
    other connection uses them).
    """
    if not path.exists():
        return
    _refuse_newer(path, schema_version(path) or 0)  # naming the user's file, not the copy
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = {companion: companion.exists() for companion in companions}
    read_only = f"{path.resolve().as_uri()}?mode=ro"
    with (
        closing(sqlite3.connect(read_only, uri=True)) as source,
        closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    for companion, was_there in existed.items():
        if not was_there:
            companion.unlink(missing_ok=True)


def stored_event(event: object) -> str:
    """A rejected event as the state file keeps it: JSON of at most MAX_STORED_EVENT_CHARS.

    A longer one keeps its beginning under `"truncated"`, with its full length; one
    that cannot be written as JSON at all (nested too deep) is described, not stored.
    """
    try:
        text = _dump_json(event)
    except (RecursionError, ValueError):
        return _dump_json({"unstorable": f"a {type(event).__name__} nested too deep to store"})
    if len(text) <= MAX_STORED_EVENT_CHARS:
        return text
    # The beginning is escaped again inside the wrapper (a quote becomes two characters):
    # cut it until its escaped form fits what the wrapper leaves.
    room = MAX_STORED_EVENT_CHARS - len(_dump_json({"truncated": "", "characters": len(text)}))
    beginning = text[:room]
    while (excess := len(_dump_json(beginning)) - 2 - room) > 0:
        beginning = beginning[: len(beginning) - excess]
    return _dump_json({"truncated": beginning, "characters": len(text)})


def _insert_seen(db: sqlite3.Connection, message_id: str) -> bool:
    cursor = db.execute("INSERT OR IGNORE INTO seen (message_id) VALUES (?)", (message_id,))
    return cursor.rowcount == 1


def _upsert_winner(db: sqlite3.Connection, change: AudienceChange, status: Status) -> bool:
    cursor = db.execute(
        "INSERT INTO winners (phone, email, audience_key, audience_id, member, ts, message_id, "
        "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (phone, email, audience_key) DO UPDATE SET "
        "audience_id = excluded.audience_id, member = excluded.member, ts = excluded.ts, "
        "message_id = excluded.message_id, status = excluded.status "
        "WHERE (excluded.ts, excluded.message_id) > (winners.ts, winners.message_id)",
        (
            change.phone or "",
            change.email or "",
            change.audience_key,
            change.audience_id,
            change.member,
            *_version_row(change),
            status,
        ),
    )
    return cursor.rowcount == 1


def _close(db: sqlite3.Connection, change: AudienceChange, status: Status = Status.DONE) -> None:
    """Close the row only if it still holds this version (a newer one stays pending)."""
    db.execute(
        "UPDATE winners SET status = ? WHERE phone = ? AND email = ? AND audience_key = ? "
        "AND ts = ? AND message_id = ? AND status IN (?, ?)",
        (
            status,
            change.phone or "",
            change.email or "",
            change.audience_key,
            *_version_row(change),
            *OPEN_STATUSES,
        ),
    )


def _version_row(change: AudienceChange) -> tuple[str, str]:
    return (format_instant(change.version.timestamp), change.version.message_id)


def _change_dict(change: AudienceChange) -> dict[str, Any]:
    return {
        "phone": change.phone,
        "email": change.email,
        "audience_key": change.audience_key,
        "audience_id": change.audience_id,
        "member": change.member,
        "timestamp": format_instant(change.version.timestamp),
        "message_id": change.version.message_id,
    }


def _load_changes(items: list[dict[str, Any]]) -> list[AudienceChange]:
    return [
        AudienceChange(
            item["phone"],
            item["email"],
            item["audience_key"],
            item["audience_id"],
            item["member"],
            Version(datetime.fromisoformat(item["timestamp"]), item["message_id"]),
        )
        for item in items
    ]


def _dump_json(value: object) -> str:
    """Compact JSON, ASCII-escaped: a rejected event's lone surrogate stays storable."""
    return json.dumps(value, separators=(",", ":"), default=str)
