"""The rows of the state file as Python values, and the statements that write one row.

What a row of `winners` holds (`Status`), who a change is about (`Identity`), what storing
an event did (`Outcome`), the counters and the journaled intents as read back, the limits
on the rejections kept, and how a rejected event is stored.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from postscript_audience_lab.sync.parse import AudienceChange, Version, format_instant

__all__ = [
    "KEEP_REJECTIONS",
    "KEEP_REJECTION_BYTES",
    "MAX_STORED_EVENT_CHARS",
    "MAX_STORED_REASON_CHARS",
    "PRUNE_MARGIN",
    "Counts",
    "Identity",
    "IngestCounts",
    "Intent",
    "Outcome",
    "RejectionLimits",
    "Status",
    "stored_event",
]

MAX_STORED_EVENT_CHARS = 2000  # of a rejected event's JSON, in the state and the rejects file
MAX_STORED_REASON_CHARS = 1000
# Past either limit of `RejectionLimits`, the oldest rejections are dropped until both are
# this share of the limit below it, so that a steady stream prunes once per that many rows.
PRUNE_MARGIN = 1 / 16
KEEP_REJECTIONS = 10_000  # the defaults of `RejectionLimits` (and of --keep-rejections…)
KEEP_REJECTION_BYTES = 16 * 1024 * 1024


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
        """The identity key (docs/design/economy.md, docs/design/benchmark.md): phone, else
        email."""
        return self.phone or self.email or ""


class Outcome(StrEnum):
    """What storing one parsed event did (the HTTP intake answers it per event)."""

    ACCEPTED = "accepted"  # the newest version known for its identity and audience
    DUPLICATE = "duplicate"  # its messageId was seen before
    STALE = "stale"  # older than the version already known
    REJECTED = "rejected"  # failed docs/design/events.md; the reason is kept in `rejections`


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
