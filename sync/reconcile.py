"""Converging Postscript to a full audience snapshot (docs/design.md §12).

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import ReconcileRefusedError
from postscript_audience_lab.sync.ledger import Identity
from postscript_audience_lab.sync.lookup import phone_digits, subscriber_created
from postscript_audience_lab.sync.parse import (
    AudienceChange,
    Rejection,
    Version,
    format_instant,
    normal_email,
    normal_phone,
)
from postscript_audience_lab.sync.plan import audience_list
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.snapshot import Snapshot

__all__ = [
    "DEFAULT_MAX_REMOVAL_SHARE",
    "AudiencePlan",
    "Directory",
    "Listed",
    "Reconciliation",
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


class Directory:
    """The shop's subscribers, read page by page; finds an identity's subscriber the way
    `sync.lookup` does (phone digits first, then email, the newest created winning), and
    keeps in full only those holding a named audience."""

    def __init__(self, audiences: Iterable[str]) -> None:
        self.audiences = frozenset(audiences)
        self.holders: dict[str, Listed] = {}
        self.listed = 0
        self._by_digits: dict[str, tuple[datetime, str]] = {}
        self._by_email: dict[str, tuple[datetime, str]] = {}
        self._seen: set[str] = set()

    def add(self, subscriber: Mapping[str, Any]) -> None:
        subscriber_id = str(subscriber.get("id") or "")
        if not subscriber_id or subscriber_id in self._seen:
            return
        self._seen.add(subscriber_id)
        self.listed += 1
        created = subscriber_created(subscriber)
        raw_phone = str(subscriber.get("phone_number") or "") or None
        phone = normal_phone(raw_phone) or raw_phone  # as events key it: E.164
        email = normal_email(subscriber.get("email"))
        if phone and (digits := phone_digits(phone)):
            _keep_newest(self._by_digits, digits, created, subscriber_id)
        if email:
            _keep_newest(self._by_email, email, created, subscriber_id)
        held = self.audiences.intersection(
            entry for entry in audience_list(subscriber) if isinstance(entry, str)
        )
        if held:
            self.holders[subscriber_id] = Listed(
                subscriber_id, phone, email, created, frozenset(held)
            )

    def resolve(self, identity: Identity) -> str | None:
        """The id of the subscriber the engine's lookup would find for `identity`."""
        if identity.phone:
            found = self._by_digits.get(phone_digits(identity.phone))
            if found is not None:
                return found[1]
        if identity.email:
            found = self._by_email.get(identity.email)
            if found is not None:
                return found[1]
        return None

    def address(self, holder: Listed) -> Identity | None:
        """The identity under which a change reaches `holder`, if one does (an email
        shared with a newer subscriber reaches that one instead)."""
        for identity in (Identity(holder.phone, None), Identity(None, holder.email)):
            if (identity.phone or identity.email) and self.resolve(identity) == holder.id:
                return identity
        return None


@dataclass
class AudiencePlan:
    """What reconciling one audience does, decided from the listing and the state file."""

    audience_key: str
    version: Version
    digest: str
    named: int = 0  # identities the snapshot names
    members_before: int = 0  # subscribers whose list holds the key now
    adds: list[str] = field(default_factory=list)  # subscribers to add, by name
    removes: list[str] = field(default_factory=list)
    unchanged: int = 0
    unknown: list[str] = field(default_factory=list)  # named, no subscriber yet: parks
    newer: int = 0  # left alone: a newer event already decided them
    unaddressable: list[str] = field(default_factory=list)  # hold the key, unreachable
    superseded_by: Version | None = None  # the state holds a newer snapshot of the audience
    changes: list[AudienceChange] = field(default_factory=list)

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
) -> AudiencePlan:
    """Pure: the changes that make the audience what the snapshot says, as of `as_of`.

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

    def change(identity: Identity, member: bool) -> AudienceChange:
        row = row_version(as_of, audience_key, identity)
        return AudienceChange(identity.phone, identity.email, audience_key, None, member, row)

    ceiling = Version(version.timestamp, version.message_id + ";")  # above its rows' ids

    def newer(subscriber_id: str) -> bool:
        """Whether a change newer than this snapshot (and not one of its own) decided it."""
        known = applied(subscriber_id).get(audience_key)
        return known is not None and known > ceiling

    named: dict[str, list[Identity]] = {}
    for identity in identities:
        plan.named += 1
        subscriber_id = directory.resolve(identity)
        if subscriber_id is None:
            plan.unknown.append(identity.name)
            plan.changes.append(change(identity, True))
        else:
            named.setdefault(subscriber_id, []).append(identity)
    for subscriber_id, found in named.items():
        holder = directory.holders.get(subscriber_id)
        if newer(subscriber_id):
            plan.newer += 1
        elif holder is not None and audience_key in holder.audiences:
            plan.unchanged += 1
        else:
            plan.adds.append(found[0].name)
            plan.changes.extend(change(identity, True) for identity in found)
    for holder in directory.holders.values():
        if audience_key not in holder.audiences:
            continue
        plan.members_before += 1
        if holder.id in named:
            continue
        if newer(holder.id):
            plan.newer += 1
            continue
        address = directory.address(holder)
        if address is None:
            plan.unaddressable.append(holder.name)
            continue
        plan.removes.append(holder.name)
        plan.changes.append(change(address, False))
    return plan


@dataclass
class Reconciliation:
    """The plan of one reconcile, and what reading the shop cost."""

    plans: list[AudiencePlan]
    snapshot: Snapshot
    pages: int = 0
    listed: int = 0

    def cost(self, lookup_batch: int, post_events: bool) -> dict[str, int]:
        """The calls applying it takes, about: lookups, PATCHes and events."""
        identities = {
            (change.phone, change.email) for plan in self.plans for change in plan.changes
        }
        by_phone = len({phone for phone, _ in identities if phone})
        by_email = len({email for phone, email in identities if not phone})
        flips = sum(len(plan.adds) + len(plan.removes) for plan in self.plans)
        return {  # phones and emails are looked up in calls of their own
            "lookups": math.ceil(by_phone / lookup_batch) + math.ceil(by_email / lookup_batch),
            "patches": len({name for plan in self.plans for name in (*plan.adds, *plan.removes)}),
            "events": flips if post_events else 0,
        }

    def as_dict(self, show: int = 0) -> dict[str, Any]:
        return {
            "snapshot": {
                "rows": self.snapshot.rows,
                "rejected": len(self.snapshot.rejections),
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
    directory = Directory(snapshot.audiences)
    pages = await _read_shop(engine, directory, transport, announce or (lambda text: None))
    floors = engine.ledger.floors()
    plans = [
        plan_audience(
            key,
            snapshot.members[key].values(),
            directory,
            as_of,
            digest=snapshot.digest(key),
            applied=engine.ledger.applied_versions,
            floor=floors.get(key),
        )
        for key in snapshot.audiences
    ]
    return Reconciliation(plans, snapshot, pages=pages, listed=directory.listed)


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
    results: list[AudienceChange | Rejection] = list(reconciliation.snapshot.rejections)
    for plan in reconciliation.plans:
        results.extend(plan.changes)
    engine.ingest_changes(results)
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
                for subscriber in subscribers:
                    directory.add(subscriber)
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


def _keep_newest(
    index: dict[str, tuple[datetime, str]], key: str, created: datetime, subscriber_id: str
) -> None:
    known = index.get(key)
    if known is None or created >= known[0]:
        index[key] = (created, subscriber_id)
