"""Which subscriber each pending identity is, in bulk: phone, then email
(docs/design/convergence.md#identity).

One drain looks every pending identity up once, `batch` values per call
(`phone_number__in`, then `email__in` for identities with no phone or whose
phone matched nobody), and keeps what it found in scratch tables of the
ledger's connection: identity -> subscriber, and each subscriber as
Postscript returned it. Identities nobody matches are parked.

The lookups are made just in time (`resolve`): after each call, the
subscribers it found are handed to the engine to be written at once, from
that read. One exception keeps "one write per subscriber": a subscriber that
a lookup still to come may find through another identity (its phone has
pending identities not looked up yet, or its email waits in the email queue)
is held back until that lookup reads it again (or, failing that, to the end
of the drain, where a read older than `max_age_s` is read again in bulk:
`refresh`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.ledger import Identity, Ledger
from postscript_audience_lab.sync.report import Report

__all__ = ["Found", "Lookup", "phone_digits", "subscriber_created"]

Queue = dict[str, list[Identity]]  # lookup value (phone or email) -> identities carrying it
# The values' part of one lookup's URL: with the path, under the 8 KiB request line that
# common servers and proxies take (a batch of 50 long emails would be 13 KB or more).
MAX_QUERY_CHARS = 6000
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
        max_age_s: float = 60.0,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.report = report
        self.batch = batch  # values per lookup; the engine may change it between lookups
        self.max_age_s = max_age_s
        self.progress = progress
        self._found: dict[str, Found] = {}  # what the latest lookup found, by subscriber id
        self._held: dict[str, Found] = {}
        ledger.clear_lookups()

    async def resolve(self) -> AsyncGenerator[list[Found], None]:
        """Look every pending identity up; after each lookup, the subscribers ready to write.

        Counts distinct identity keys in the report. A subscriber comes once, unless a
        later lookup finds more of its identities (then it comes again, with them).
        """
        total = self.ledger.count_pending_identities()
        by_phone: Queue = {}
        by_email: Queue = {}
        last_key = ""
        for done, identity in enumerate(self.ledger.pending_identities(), start=1):
            key = identity.name  # identities come sorted, so equal keys are adjacent
            if identity.phone:
                if identity.phone not in by_phone and len(by_phone) >= self.batch:
                    _merge(by_email, await self._by_phone(by_phone))
                    yield self._ready(by_email)
                    by_phone = {}
                    while len(by_email) >= self.batch:
                        by_email = await self._by_email(by_email)
                        yield self._ready(by_email)
                by_phone.setdefault(identity.phone, []).append(identity)
            else:
                if key not in by_email and len(by_email) >= self.batch:
                    by_email = await self._by_email(by_email)
                    yield self._ready(by_email)
                by_email.setdefault(key, []).append(identity)
            if key != last_key:
                self.report.identities += 1
                last_key = key
            if self.progress is not None:
                self.progress("resolve", done, total)
        if by_phone:
            _merge(by_email, await self._by_phone(by_phone))
            yield self._ready(by_email)
        while by_email:
            by_email = await self._by_email(by_email)
            yield self._ready(by_email)
        held = list(self._held.values())
        self._held.clear()
        for found in held:
            found.identities = self.ledger.resolved_to(str(found.subscriber["id"]))
        for start in range(0, len(held), self.batch):
            yield await self.refresh(held[start : start + self.batch], self.max_age_s)

    def _ready(self, emails_to_look_up: Queue) -> list[Found]:
        """What the latest lookup found, less the subscribers to hold back: those that a
        lookup still to come may find through another identity (see above)."""
        ready: list[Found] = []
        for subscriber_id, found in self._found.items():
            phone = found.subscriber.get("phone_number")
            email = str(found.subscriber.get("email") or "").strip().lower()
            if (phone and self.ledger.phone_unresolved(str(phone))) or (
                email and email in emails_to_look_up
            ):
                self._held[subscriber_id] = found
                continue
            self._held.pop(subscriber_id, None)
            found.identities = self.ledger.resolved_to(subscriber_id)
            ready.append(found)
        self._found = {}
        return ready

    def count(self) -> int:
        """Subscribers found in this drain."""
        return self.ledger.count_fetched()

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
        for subscriber in sorted(found, key=subscriber_created):  # most recent last, so it wins
            by_digits[phone_digits(subscriber.get("phone_number"))] = subscriber
        fallback: Queue = {}
        unknown: list[Identity] = []
        for phone, identities in by_phone.items():
            match = by_digits.get(phone_digits(phone))
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
        """One lookup for the first `batch` emails, fewer when their query would be longer
        than MAX_QUERY_CHARS; returns the emails still to look up."""
        emails = _first_fitting(list(by_email), self.batch, "email__in")
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
            # docs/design/convergence.md#identity: the most recently created wins
            newest = max(candidates, key=subscriber_created)
            self._remember(by_email[email], newest, via="email")
        self._park(unknown)
        return {email: by_email[email] for email in list(by_email)[len(emails) :]}

    def _remember(
        self, identities: Iterable[Identity], subscriber: Mapping[str, Any], via: str
    ) -> None:
        """Identities found as `subscriber`: for this drain, and in the lasting cache."""
        identities = list(identities)
        read_at = time.monotonic()
        self.ledger.remember_subscriber(subscriber, identities, via, read_at=read_at)
        self._found[str(subscriber["id"])] = Found(dict(subscriber), identities, read_at)

    def _park(self, identities: list[Identity]) -> None:
        if identities:
            self.ledger.park(identities)


def _merge(into: Queue, more: Mapping[str, list[Identity]]) -> None:
    for key, identities in more.items():
        into.setdefault(key, []).extend(identities)


def phone_digits(phone: object) -> str:
    """A phone's digits alone: how two spellings of one number are matched."""
    return re.sub(r"\D", "", str(phone or ""))


def subscriber_created(subscriber: Mapping[str, Any]) -> datetime:
    """When a subscriber (as the API answers it) was created; the earliest instant if unknown."""
    try:
        instant = datetime.fromisoformat(str(subscriber.get("created_at")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _first_fitting(values: list[str], most: int, field: str) -> list[str]:
    """The first values, at most `most`, whose `field=value&…` query fits MAX_QUERY_CHARS
    (always at least one: a single value is bounded by intake, emails at 254 characters)."""
    taken: list[str] = []
    size = 0
    for value in values[:most]:
        cost = len(field) + len(quote(value, safe="")) + 2  # "=" and "&"
        if taken and size + cost > MAX_QUERY_CHARS:
            break
        taken.append(value)
        size += cost
    return taken
