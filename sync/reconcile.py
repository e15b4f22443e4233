"""Converging Postscript to a full audience snapshot (docs/design/reconcile.md).

One model with sync: a snapshot of audience A as of instant T is a change per
(subscriber, A) with version (T, an id of the snapshot): *member* for everyone it
names, *not a member* for everyone else. The newest version wins, whichever of
events and snapshots it comes from, so reconcile and sync compose in any order.

How that is stored without a row per subscriber of the shop:

- the state file keeps, per audience, a *floor*: the version (T, `reconcile:<T>`)
  of the newest snapshot reconciled. Every change of A older than the floor is
  stale for every subscriber (`Ledger.applied_versions`), which is what "absent
  from the snapshot" says about the subscribers it did not have to write;
- a change is stored for each subscriber whose list must change: the members
  it names who lack the key (and names it does not find yet, which park as in
  sync), and the subscribers that hold the key but are not named. Their ids,
  `reconcile:<T>:<hash>`, sort just above the floor, so they are not stale.

The snapshot's floor is recorded before any of its changes is stored, so a rerun after a
crash meets the same-instant guard. Members, the listing and the planned changes live in
scratch databases (`sync.scratch`), so memory does not grow with the snapshot or the shop.

Who holds the key now is read from the shop's subscriber list, 100 a page:
`ceil(subscribers / 100)` calls, said before they are made. Then the engine's
own ingest and drain write the changes, with its lookups, journal, events and
parking. Guards run before anything is written: a snapshot that would remove
more than `max_removal_share` of an audience's current members, or that names
nobody in an audience, is refused.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.directory import Directory
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import ReconcileRefusedError
from postscript_audience_lab.sync.ledger import Identity
from postscript_audience_lab.sync.parse import AudienceChange, Version, format_instant
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.scratch import ScratchDatabase
from postscript_audience_lab.sync.snapshot import Snapshot

__all__ = [
    "DEFAULT_MAX_REMOVAL_SHARE",
    "SAMPLE_NAMES",
    "AudiencePlan",
    "PlannedChanges",
    "Reconciliation",
    "Sample",
    "apply_reconcile",
    "floor_version",
    "plan_audience",
    "plan_reconcile",
    "refusals",
    "row_version",
]

DEFAULT_MAX_REMOVAL_SHARE = 0.2
ID_PREFIX = "reconcile:"
PAGE_SIZE = 100  # subscribers per page of GET /api/v2/subscribers
SAMPLE_NAMES = 100  # names of each kind a plan keeps to show (--show takes at most this)
SPOOL_BATCH = 5000  # planned changes written to the spool per transaction

Announce = Callable[[str], None]


def floor_version(as_of: datetime) -> Version:
    """The version of a snapshot as of `as_of`: every older change of its audiences loses."""
    return Version(as_of.astimezone(UTC), f"{ID_PREFIX}{format_instant(as_of)}")


def row_version(as_of: datetime, audience_key: str, identity: Identity) -> Version:
    """The version of one stored snapshot change: the floor's, with a stable suffix, so it
    sorts just above the floor (and a rerun of the same snapshot is a duplicate)."""
    floor = floor_version(as_of)
    text = f"{audience_key}\0{identity.phone or ''}\0{identity.email or ''}"
    suffix = hashlib.sha256(text.encode()).hexdigest()[:20]
    return Version(floor.timestamp, f"{floor.message_id}:{suffix}")


class Sample:
    """How many names there are of one kind, and the first `SAMPLE_NAMES` of them."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def append(self, name: str) -> None:
        self.count += 1
        if len(self.first) < SAMPLE_NAMES:
            self.first.append(name)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return iter(self.first)

    def __getitem__(self, part: slice) -> list[str]:
        return self.first[part]


class PlannedChanges:
    """The changes a plan will store, spooled to a scratch database (`sync.scratch`), with
    what each is for: an `add`, a `remove`, or a name that will `park`."""

    def __init__(self) -> None:
        self._db = ScratchDatabase(
            [
                "CREATE TABLE changes (kind TEXT NOT NULL, name TEXT NOT NULL, phone TEXT, "
                "email TEXT, audience_key TEXT NOT NULL, member INTEGER NOT NULL, "
                "ts TEXT NOT NULL, message_id TEXT NOT NULL)"
            ]
        )
        self._waiting: list[tuple[object, ...]] = []

    def close(self) -> None:
        self._db.close()

    def add(self, kind: str, name: str, change: AudienceChange) -> None:
        version = change.version
        self._waiting.append(
            (
                kind,
                name,
                change.phone,
                change.email,
                change.audience_key,
                change.member,
                version.timestamp.isoformat(),
                version.message_id,
            )
        )
        if len(self._waiting) >= SPOOL_BATCH:
            self._flush()

    def __iter__(self) -> Iterator[AudienceChange]:
        self._flush()
        cursor = self._db.rows(
            "SELECT phone, email, audience_key, member, ts, message_id FROM changes ORDER BY rowid"
        )
        for phone, email, key, member, ts, message_id in cursor:
            version = Version(datetime.fromisoformat(ts), message_id)
            yield AudienceChange(phone, email, key, None, bool(member), version)

    def cost(self, lookup_batch: int) -> dict[str, int]:
        """The calls writing them takes, about: lookups and PATCHes."""
        self._flush()
        db = self._db
        by_phone = db.one("SELECT COUNT(DISTINCT phone) FROM changes WHERE phone IS NOT NULL")
        by_email = db.one("SELECT COUNT(DISTINCT email) FROM changes WHERE phone IS NULL")
        patches = db.one("SELECT COUNT(DISTINCT name) FROM changes WHERE kind != 'park'")
        return {  # phones and emails are looked up in calls of their own
            "lookups": math.ceil(by_phone / lookup_batch) + math.ceil(by_email / lookup_batch),
            "patches": int(patches),
        }

    def _flush(self) -> None:
        if not self._waiting:
            return
        self._db.run_many("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._waiting)
        self._waiting = []


@dataclass
class AudiencePlan:
    """What reconciling one audience does, decided from the listing and the state file.

    Of each kind of name only the count and the first `SAMPLE_NAMES` are kept; the changes
    themselves are spooled to the reconciliation's `PlannedChanges`.
    """

    audience_key: str
    version: Version
    digest: str
    named: int = 0  # identities the snapshot names
    members_before: int = 0  # subscribers whose list holds the key now
    adds: Sample = field(default_factory=Sample)  # subscribers to add, by name
    removes: Sample = field(default_factory=Sample)
    unchanged: int = 0
    unknown: Sample = field(default_factory=Sample)  # named, no subscriber yet: parks
    newer: int = 0  # left alone: a newer event already decided them
    unaddressable: Sample = field(default_factory=Sample)  # hold the key, unreachable
    superseded_by: Version | None = None  # the state holds a newer snapshot of the audience

    @property
    def removal_share(self) -> float:
        return len(self.removes) / self.members_before if self.members_before else 0.0

    def as_dict(self, show: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = {
            "as_of": format_instant(self.version.timestamp),
            "snapshot_members": self.named,
            "members_before": self.members_before,
            "adds": len(self.adds),
            "removes": len(self.removes),
            "unchanged": self.unchanged,
            "unknown": len(self.unknown),
            "newer": self.newer,
            "unaddressable": len(self.unaddressable),
            "removal_share": round(self.removal_share, 4),
            "superseded": self.superseded_by is not None,
        }
        if show:
            data["first_adds"] = self.adds[:show]
            data["first_removes"] = self.removes[:show]
            data["first_unknown"] = self.unknown[:show]
        return data


def plan_audience(
    audience_key: str,
    identities: Iterable[Identity],
    directory: Directory,
    as_of: datetime,
    *,
    digest: str,
    applied: Callable[[str], Mapping[str, Version]],
    floor: tuple[Version, str] | None = None,
    changes: PlannedChanges,
) -> AudiencePlan:
    """The changes that make the audience what the snapshot says, as of `as_of`, spooled to
    `changes`; no network, no clock, and memory that does not grow with the snapshot.

    `applied(subscriber_id)` gives the versions a change must beat (the state file's);
    `floor` is the audience's snapshot floor there, with its digest.
    """
    version = floor_version(as_of)
    plan = AudiencePlan(audience_key, version, digest)
    if floor is not None and floor[0] > version:
        plan.superseded_by = floor[0]
        return plan
    if floor is not None and floor[0] == version and floor[1] != digest:
        raise ReconcileRefusedError(
            f"the state file already holds a different snapshot of {audience_key!r} as of "
            f"{format_instant(as_of)} (digest {floor[1][:12]}, this one's {digest[:12]}), "
            "recorded before its changes, which a crashed run may have left pending; two "
            "snapshots of one instant cannot both be right: give this one the --as-of of its "
            "own export, and its changes will outrank the other's"
        )

    def change(kind: str, name: str, identity: Identity, member: bool) -> None:
        row = row_version(as_of, audience_key, identity)
        changes.add(
            kind,
            name,
            AudienceChange(identity.phone, identity.email, audience_key, None, member, row),
        )

    ceiling = Version(version.timestamp, version.message_id + ";")  # above its rows' ids

    def newer(subscriber_id: str) -> bool:
        """Whether a change newer than this snapshot (and not one of its own) decided it."""
        known = applied(subscriber_id).get(audience_key)
        return known is not None and known > ceiling

    directory.forget_named()
    for identity in identities:
        plan.named += 1
        subscriber_id = directory.resolve(identity)
        if subscriber_id is None:
            plan.unknown.append(identity.name)
            change("park", identity.name, identity, True)
        else:
            directory.name(subscriber_id, identity)
    for subscriber_id, found in directory.named_groups():
        if newer(subscriber_id):
            plan.newer += 1
        elif directory.holds(subscriber_id, audience_key):
            plan.unchanged += 1
        else:
            plan.adds.append(found[0].name)
            for identity in found:
                change("add", found[0].name, identity, True)
    for holder in directory.holders(audience_key):
        plan.members_before += 1
        if directory.is_named(holder.id):
            continue
        if newer(holder.id):
            plan.newer += 1
            continue
        address = directory.address(holder)
        if address is None:
            plan.unaddressable.append(holder.name)
            continue
        plan.removes.append(holder.name)
        change("remove", holder.name, address, False)
    return plan


@dataclass
class Reconciliation:
    """The plan of one reconcile, its spooled changes, and what reading the shop cost.

    Close it (and its snapshot) to delete the temporary databases at once.
    """

    plans: list[AudiencePlan]
    snapshot: Snapshot
    changes: PlannedChanges
    pages: int = 0
    listed: int = 0

    def close(self) -> None:
        self.changes.close()
        self.snapshot.close()

    def cost(self, lookup_batch: int, post_events: bool) -> dict[str, int]:
        """The calls applying it takes, about: lookups, PATCHes and events."""
        flips = sum(len(plan.adds) + len(plan.removes) for plan in self.plans)
        return {**self.changes.cost(lookup_batch), "events": flips if post_events else 0}

    def as_dict(self, show: int = 0) -> dict[str, Any]:
        return {
            "snapshot": {
                "rows": self.snapshot.rows,
                "rejected": self.snapshot.rejected,
                "listing_pages": self.pages,
                "subscribers_listed": self.listed,
            },
            "audiences": {plan.audience_key: plan.as_dict(show) for plan in self.plans},
        }


def refusals(
    reconciliation: Reconciliation,
    *,
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE,
    allow_empty: bool = False,
) -> list[str]:
    """Why the guards refuse this reconcile, one sentence per audience; empty when they do not."""
    found: list[str] = []
    for plan in reconciliation.plans:
        if plan.superseded_by is not None:
            continue
        key = plan.audience_key
        if plan.named == 0 and not allow_empty:
            found.append(
                f"the snapshot names no member of {key!r}, which would remove all "
                f"{plan.members_before} it has now; an export that came out empty looks "
                "like this. Pass --allow-empty if the audience really is empty"
            )
        elif plan.named > 0 and plan.removal_share > max_removal_share:
            found.append(
                f"the snapshot would remove {len(plan.removes)} of the {plan.members_before} "
                f"current members of {key!r} ({plan.removal_share:.0%}), more than "
                f"--max-removal-share {max_removal_share:.0%} allows; a truncated export looks "
                "like this. Check the export, or pass --max-removal-share "
                f"{math.ceil(plan.removal_share * 100)}% to allow it"
            )
    return found


async def plan_reconcile(
    engine: Engine,
    snapshot: Snapshot,
    as_of: datetime,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    announce: Announce | None = None,
) -> Reconciliation:
    """Read who holds the snapshot's audiences now and decide what to change; writes nothing.

    One `GET /me` (the state file must serve the key's shop), then every page of the
    shop's subscribers, announced with its cost once the first page says how many.
    """
    await engine.check_shop()
    changes = PlannedChanges()
    try:
        with Directory(snapshot.audiences) as directory:
            pages = await _read_shop(engine, directory, transport, announce or (lambda text: None))
            floors = engine.ledger.floors()
            plans = [
                plan_audience(
                    key,
                    snapshot.members(key),
                    directory,
                    as_of,
                    digest=snapshot.digest(key),
                    applied=engine.ledger.applied_versions,
                    floor=floors.get(key),
                    changes=changes,
                )
                for key in snapshot.audiences
            ]
            listed = directory.listed
    except BaseException:
        changes.close()
        raise
    return Reconciliation(plans, snapshot, changes, pages=pages, listed=listed)


async def apply_reconcile(
    engine: Engine,
    reconciliation: Reconciliation,
    *,
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE,
    allow_empty: bool = False,
) -> Report:
    """Record the snapshots' floors, then store the plan's changes, then drain with the engine.

    Raises `ReconcileRefusedError`, having written nothing, when a guard refuses.
    """
    refused = refusals(reconciliation, max_removal_share=max_removal_share, allow_empty=allow_empty)
    if refused:
        raise ReconcileRefusedError("; ".join(refused) + ". Nothing was changed")
    # The snapshot's identity first: once any of its changes is stored, a rerun with other
    # contents for the same instant must meet the same-instant guard, crash or not.
    with engine.ledger.transaction():
        for plan in reconciliation.plans:
            if plan.superseded_by is None:
                engine.ledger.raise_floor(plan.audience_key, plan.version, plan.digest)
    engine.ingest_changes(reconciliation.changes)  # read from the spool as they are stored
    engine.report.rejected += reconciliation.snapshot.rejected  # written as read (--rejects-out)
    return await engine.drain()


async def _read_shop(
    engine: Engine,
    directory: Directory,
    transport: httpx.AsyncBaseTransport | None,
    announce: Announce,
) -> int:
    settings = engine.settings
    client = PostscriptClient(
        settings.base_url,
        settings.secret_key,
        rate_limit=settings.rate_limit,
        timeout_s=settings.timeout_s,
        transport=transport,
        retry_forever=settings.retry_forever,
    )
    try:
        async with client:
            page, total = 1, 1
            while page <= total:
                subscribers, total = await client.list_subscribers(page)
                if page == 1:
                    announce(_listing_cost(total, settings.rate_limit))
                directory.add_page(subscribers)
                page += 1
    finally:
        engine.report.api_calls.update(client.calls)
    return page - 1


def _listing_cost(pages: int, rate: float) -> str:
    took = f", about {math.ceil(pages / rate)} s at {rate:g} requests/s" if rate > 0 else ""
    counted = f"{pages} page" if pages == 1 else f"{pages} pages"
    calls = "1 call" if pages == 1 else f"{pages} calls"
    return (
        f"reading the shop's subscribers to see who holds the audiences now: {counted} of "
        f"{PAGE_SIZE}, so {calls}{took}"
    )
