"""The `Ledger`: the open state file, and every read and write the engine makes of it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from postscript_audience_lab.sync.ledger.lock import hold_lock
from postscript_audience_lab.sync.ledger.rows import (
    MAX_STORED_REASON_CHARS,
    OPEN_STATUSES,
    PRUNE_MARGIN,
    Counts,
    Identity,
    IngestCounts,
    Intent,
    Outcome,
    RejectionLimits,
    Status,
    _change_dict,
    _close,
    _dump_json,
    _insert_seen,
    _load_changes,
    _upsert_winner,
    _version_row,
    stored_event,
)
from postscript_audience_lab.sync.ledger.schema import (
    DRAIN_SCRATCH,
    INTENTS,
    REJECTION_BYTES,
    REJECTIONS_DROPPED,
    REJECTIONS_KEPT,
    WINNERS_COUNTER,
    _migrate,
    _refuse_newer,
    schema_version,
)
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, Version, format_instant
from postscript_audience_lab.sync.plan import Plan

__all__ = ["Ledger"]

INGEST_TRANSACTION_ROWS = 5000


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
        For events whose sender is told they are stored (docs/design/service.md)."""
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
