"""Which subscriber each pending identity is, in bulk: phone, then email (docs/design.md §4.5).

One drain looks every pending identity up once, `lookup_batch` values per call
(`phone_number__in`, then `email__in` for identities with no phone or whose
phone matched nobody), and keeps what it found in scratch tables of the
ledger's connection: identity -> subscriber, and each subscriber as
Postscript returned it. The engine then plans each subscriber once, from that
read; one read longer ago than `max_read_age_s` is read again, in bulk, just
before the write (`refresh`). Identities nobody matches are parked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.client import PostscriptClient
from sync.ledger import Identity, Ledger
from sync.report import Report

__all__ = ["Found", "Lookup"]

Queue = dict[str, list[Identity]]  # lookup value (phone or email) -> identities carrying it
ProgressCallback = Callable[[str, int, int | None], None]


@dataclass
class Found:
    """A subscriber as Postscript returned it (at `read_at`), and the identities that are it."""

    subscriber: dict[str, Any]
    identities: list[Identity]
    read_at: float  # time.monotonic() of the read


class Lookup:
    """Resolves the ledger's pending identities through one client, for one drain."""

    def __init__(
        self,
        ledger: Ledger,
        client: PostscriptClient,
        report: Report,
        *,
        batch: int = 50,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.report = report
        self.batch = batch
        self.progress = progress
        ledger.clear_lookups()

    async def resolve_pending(self) -> None:
        """Look every pending identity up; count distinct identity keys in the report."""
        total = self.ledger.count_pending_identities()
        by_phone: Queue = {}
        by_email: Queue = {}
        last_key = ""
        for done, identity in enumerate(self.ledger.pending_identities(), start=1):
            key = identity.name  # identities come sorted, so equal keys are adjacent
            if identity.phone:
                if identity.phone not in by_phone and len(by_phone) >= self.batch:
                    _merge(by_email, await self._by_phone(by_phone))
                    by_phone = {}
                    while len(by_email) >= self.batch:
                        by_email = await self._by_email(by_email)
                by_phone.setdefault(identity.phone, []).append(identity)
            else:
                if key not in by_email and len(by_email) >= self.batch:
                    by_email = await self._by_email(by_email)
                by_email.setdefault(key, []).append(identity)
            if key != last_key:
                self.report.identities += 1
                last_key = key
            if self.progress is not None:
                self.progress("resolve", done, total)
        if by_phone:
            _merge(by_email, await self._by_phone(by_phone))
        while by_email:
            by_email = await self._by_email(by_email)

    def count(self) -> int:
        """Subscribers found in this drain."""
        return self.ledger.count_fetched()

    def found(self, page: int = 50) -> Iterator[list[Found]]:
        """Pages of (subscriber as read in this drain, the identities that resolved to it)."""
        last = ""
        while rows := self.ledger.fetched_after(last, page):
            yield [
                Found(subscriber, self.ledger.resolved_to(subscriber_id), read_at)
                for subscriber_id, subscriber, read_at in rows
            ]
            last = rows[-1][0]

    async def refresh(self, chunk: list[Found], max_age_s: float) -> list[Found]:
        """Read again, in bulk, the subscribers read more than `max_age_s` ago.

        A long run writes its last subscribers long after it looked them up;
        the PATCH must start from a recent list, or it could undo someone
        else's change to it. A subscriber the bulk read misses keeps its read.
        """
        now = time.monotonic()
        old = [found for found in chunk if now - found.read_at > max_age_s]
        if not old:
            return chunk
        bodies = [found.subscriber for found in old]
        phones = [str(body["phone_number"]) for body in bodies if body.get("phone_number")]
        email_only = [body for body in bodies if not body.get("phone_number")]
        emails = [str(body["email"]) for body in email_only if body.get("email")]
        fresh = {
            str(subscriber["id"]): subscriber
            for subscriber in await self.client.find_subscribers(phones=phones, emails=emails)
        }
        read_at = time.monotonic()
        return [
            Found(fresh[key], found.identities, read_at)
            if (key := str(found.subscriber["id"])) in fresh
            else found
            for found in chunk
        ]

    async def _by_phone(self, by_phone: Queue) -> Queue:
        """One lookup for these phones; returns the not-found identities that have an email."""
        found = await self.client.find_subscribers(phones=sorted(by_phone))
        by_digits: dict[str, dict[str, Any]] = {}
        for subscriber in sorted(found, key=_created):  # most recent last, so it wins
            by_digits[_digits(subscriber.get("phone_number"))] = subscriber
        fallback: Queue = {}
        unknown: list[Identity] = []
        for phone, identities in by_phone.items():
            match = by_digits.get(_digits(phone))
            if match is not None:
                self._remember(identities, match, via="phone")
                continue
            for identity in identities:
                if identity.email:
                    fallback.setdefault(identity.email, []).append(identity)
                else:
                    unknown.append(identity)
        self._park(unknown)
        return fallback

    async def _by_email(self, by_email: Queue) -> Queue:
        """One lookup for the first `batch` emails; returns the emails still to look up."""
        emails = list(by_email)[: self.batch]
        found = await self.client.find_subscribers(emails=emails)
        matches: dict[str, list[dict[str, Any]]] = {}
        for subscriber in found:
            email = str(subscriber.get("email") or "").strip().lower()
            matches.setdefault(email, []).append(subscriber)
        unknown: list[Identity] = []
        for email in emails:
            candidates = matches.get(email)
            if not candidates:
                unknown.extend(by_email[email])
                continue
            if len({str(candidate["id"]) for candidate in candidates}) > 1:
                self.report.ambiguous += 1
            newest = max(candidates, key=_created)  # design §4.5: the most recently created
            self._remember(by_email[email], newest, via="email")
        self._park(unknown)
        return {email: by_email[email] for email in list(by_email)[self.batch :]}

    def _remember(
        self, identities: Iterable[Identity], subscriber: Mapping[str, Any], via: str
    ) -> None:
        """Identities found as `subscriber`: for this drain, and in the lasting cache."""
        self.ledger.remember_subscriber(subscriber, identities, via, read_at=time.monotonic())

    def _park(self, identities: list[Identity]) -> None:
        if identities:
            self.ledger.park(identities)


def _merge(into: Queue, more: Mapping[str, list[Identity]]) -> None:
    for key, identities in more.items():
        into.setdefault(key, []).extend(identities)


def _digits(phone: object) -> str:
    return re.sub(r"\D", "", str(phone or ""))


def _created(subscriber: Mapping[str, Any]) -> datetime:
    try:
        instant = datetime.fromisoformat(str(subscriber.get("created_at")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
