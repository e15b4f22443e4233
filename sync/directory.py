"""The shop's subscribers as reconcile reads them (docs/design/reconcile.md), held on disk.

`pslab reconcile` lists every subscriber of the shop to see who holds the snapshot's
audiences now, and then finds each named identity's subscriber the way `sync.lookup`
does (phone digits first, then email, the newest created winning). A shop can be large,
so the listing goes to a private temporary SQLite database (`sync.scratch`: on disk past a
small page cache, deleted when closed) instead of dictionaries:
memory stays flat whatever the shop's size. Alongside it, the identities of one
audience's plan that were found, grouped by subscriber (`name`, `named_groups`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postscript_audience_lab.sync.ledger import Identity
from postscript_audience_lab.sync.lookup import phone_digits, subscriber_created
from postscript_audience_lab.sync.parse import normal_email, normal_phone
from postscript_audience_lab.sync.plan import audience_list
from postscript_audience_lab.sync.scratch import ScratchDatabase, ScratchHolder

__all__ = ["Directory", "Listed"]

NAMED_BATCH = 5000  # found identities written per transaction

SCHEMA = (
    "CREATE TABLE listed (id TEXT PRIMARY KEY) WITHOUT ROWID",
    # per phone's digits and per email, the newest created subscriber that has it
    "CREATE TABLE by_digits (digits TEXT PRIMARY KEY, created REAL, id TEXT) WITHOUT ROWID",
    "CREATE TABLE by_email (email TEXT PRIMARY KEY, created REAL, id TEXT) WITHOUT ROWID",
    # the subscribers holding one of the named audiences, in full
    "CREATE TABLE holders (id TEXT UNIQUE NOT NULL, phone TEXT, email TEXT, created REAL, "
    "audiences TEXT NOT NULL)",
    "CREATE TABLE holding (audience_key TEXT, id TEXT, PRIMARY KEY (audience_key, id)) "
    "WITHOUT ROWID",
    # one audience's named identities that were found, by subscriber
    "CREATE TABLE named (id TEXT NOT NULL, phone TEXT NOT NULL, email TEXT NOT NULL)",
    "CREATE INDEX named_by_id ON named (id)",
)
KEEP_NEWEST = (
    "INSERT INTO {table} VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
    "created = excluded.created, id = excluded.id WHERE excluded.created >= {table}.created"
)


@dataclass(frozen=True)
class Listed:
    """A subscriber as the shop's list showed it, reduced to what reconcile needs."""

    id: str
    phone: str | None
    email: str | None
    created_at: datetime
    audiences: frozenset[str]  # the named audiences its `Segment Audiences` holds

    @property
    def name(self) -> str:
        return self.phone or self.email or self.id


class Directory(ScratchHolder):
    """The shop's subscribers, added page by page; close it to delete its database."""

    def __init__(self, audiences: Iterable[str]) -> None:
        self.audiences = frozenset(audiences)
        self.listed = 0
        self._db = ScratchDatabase(SCHEMA)
        self._named: list[tuple[str, str, str]] = []

    def add_page(self, subscribers: Iterable[Mapping[str, Any]]) -> None:
        """One page of the listing, in one transaction (a subscriber listed twice counts once)."""
        with self._db.transaction():
            for subscriber in subscribers:
                self._add(subscriber)

    def add(self, subscriber: Mapping[str, Any]) -> None:
        self.add_page([subscriber])

    def _add(self, subscriber: Mapping[str, Any]) -> None:
        db = self._db
        subscriber_id = str(subscriber.get("id") or "")
        if not subscriber_id:
            return
        if db.run("INSERT OR IGNORE INTO listed VALUES (?)", (subscriber_id,)).rowcount == 0:
            return
        self.listed += 1
        created = subscriber_created(subscriber).timestamp()
        raw_phone = str(subscriber.get("phone_number") or "") or None
        phone = normal_phone(raw_phone) or raw_phone  # as events key it: E.164
        email = normal_email(subscriber.get("email"))
        if phone and (digits := phone_digits(phone)):
            db.run(KEEP_NEWEST.format(table="by_digits"), (digits, created, subscriber_id))
        if email:
            db.run(KEEP_NEWEST.format(table="by_email"), (email, created, subscriber_id))
        held = sorted(
            self.audiences.intersection(
                entry for entry in audience_list(subscriber) if isinstance(entry, str)
            )
        )
        if held:
            db.run(
                "INSERT INTO holders VALUES (?, ?, ?, ?, ?)",
                (subscriber_id, phone, email, created, json.dumps(held)),
            )
            for key in held:
                db.run("INSERT INTO holding VALUES (?, ?)", (key, subscriber_id))

    def resolve(self, identity: Identity) -> str | None:
        """The id of the subscriber the engine's lookup would find for `identity`."""
        if identity.phone:
            found = self._db.one(
                "SELECT id FROM by_digits WHERE digits = ?", (phone_digits(identity.phone),)
            )
            if found is not None:
                return str(found)
        if identity.email:
            found = self._db.one("SELECT id FROM by_email WHERE email = ?", (identity.email,))
            if found is not None:
                return str(found)
        return None

    def address(self, holder: Listed) -> Identity | None:
        """The identity under which a change reaches `holder`, if one does (an email
        shared with a newer subscriber reaches that one instead)."""
        for identity in (Identity(holder.phone, None), Identity(None, holder.email)):
            if (identity.phone or identity.email) and self.resolve(identity) == holder.id:
                return identity
        return None

    def holds(self, subscriber_id: str, audience_key: str) -> bool:
        sql = "SELECT 1 FROM holding WHERE audience_key = ? AND id = ?"
        return self._db.one(sql, (audience_key, subscriber_id)) is not None

    def holders(self, audience_key: str) -> Iterator[Listed]:
        """The subscribers whose list holds `audience_key` now, in the order listed."""
        cursor = self._db.rows(
            "SELECT h.id, h.phone, h.email, h.created, h.audiences FROM holding AS k "
            "JOIN holders AS h ON h.id = k.id WHERE k.audience_key = ? ORDER BY h.rowid",
            (audience_key,),
        )
        for subscriber_id, phone, email, created, audiences in cursor:
            yield Listed(
                subscriber_id,
                phone,
                email,
                datetime.fromtimestamp(created, UTC),
                frozenset(json.loads(audiences)),
            )

    # -- one audience's found identities --------------------------------------------

    def forget_named(self) -> None:
        self._named = []
        self._db.run("DELETE FROM named")

    def name(self, subscriber_id: str, identity: Identity) -> None:
        """`identity`, named by the snapshot, is `subscriber_id`'s."""
        self._named.append((subscriber_id, *identity.key))
        if len(self._named) >= NAMED_BATCH:
            self._write_named()

    def is_named(self, subscriber_id: str) -> bool:
        self._write_named()
        sql = "SELECT 1 FROM named WHERE id = ? LIMIT 1"
        return self._db.one(sql, (subscriber_id,)) is not None

    def named_groups(self) -> Iterator[tuple[str, list[Identity]]]:
        """Per subscriber found, the identities naming it, in the order named."""
        self._write_named()
        cursor = self._db.rows(  # a subscriber where it was first named
            "SELECT id, phone, email, MIN(rowid) OVER (PARTITION BY id) AS first FROM named "
            "ORDER BY first, rowid"
        )
        current: str | None = None
        group: list[Identity] = []
        for subscriber_id, phone, email, _first in cursor:
            if subscriber_id != current:
                if current is not None:
                    yield current, group
                current, group = subscriber_id, []
            group.append(Identity(phone or None, email or None))
        if current is not None:
            yield current, group

    def _write_named(self) -> None:
        if not self._named:
            return
        self._db.run_many("INSERT INTO named VALUES (?, ?, ?)", self._named)
        self._named = []
