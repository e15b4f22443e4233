"""What the web inbox shows, read from the emulator: searches, filters and pages.

Nothing here renders HTML; the pages (subscribers.py, activity.py) do. Lists are paged
so a page costs the same with 10,000 subscribers or 100,000 journal entries
(`python -m postscript_audience_lab.lab.inbox_bench` measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.model.delivery import Delivery
from postscript_audience_lab.emulator.postscript.model.messages import MessageBook
from postscript_audience_lab.emulator.postscript.model.phones import lookup_digits
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber

__all__ = [
    "AUDIENCES_PROPERTY",
    "JournalFilter",
    "Page",
    "ThreadItem",
    "audiences",
    "conversation",
    "deliveries_about",
    "filter_journal",
    "search_subscribers",
    "subscription_state",
    "version",
]

AUDIENCES_PROPERTY = "Segment Audiences"  # where the engine keeps a subscriber's audiences

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page (1-based `number`) of `total` matching items."""

    items: Sequence[T]
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @classmethod
    def of(cls, items: Sequence[T], number: int, size: int) -> Page[T]:
        last = max(1, -(-len(items) // size))
        number = min(max(1, number), last)
        start = (number - 1) * size
        return cls(items[start : start + size], number, size, len(items))


def subscription_state(subscriber: Subscriber) -> str:
    """The subscriber's state in a word or two: pending, subscribed, opted out, or one
    subscription only."""
    if subscriber.pending:
        return "pending"
    promotional, transactional = subscriber.promotional_can_send, subscriber.transactional_can_send
    if promotional and transactional:
        return "subscribed"
    if not promotional and not transactional:
        return "opted out"
    return "promotional only" if promotional else "transactional only"


def audiences(subscriber: Subscriber) -> list[str]:
    value = subscriber.properties.get(AUDIENCES_PROPERTY)
    if isinstance(value, list):
        return [str(item) for item in value]
    return [] if value in (None, "") else [str(value)]


def search_subscribers(store: Store, query: str, region: str) -> list[Subscriber]:
    """Newest first. A phone in any spelling ("(415) 555-0100" finds +14155550100) is looked
    up by its digits, then matched as a part of a number; text with an @ or without digits
    matches a part of an email or an id, in any case."""
    everyone = list(store)
    everyone.reverse()
    query = query.strip()
    if not query:
        return everyone
    digits = "".join(ch for ch in query if ch.isdigit())
    if digits and "@" not in query:
        exact = store.find_by_phone_digits(lookup_digits(query, region), pending=True)
        if exact is not None:
            return [exact]
        return [s for s in everyone if s.phone_number and digits in s.phone_number]
    needle = query.lower()
    return [s for s in everyone if needle in (s.email or "").lower() or needle in s.id.lower()]


@dataclass(frozen=True)
class JournalFilter:
    """The journal page's filters; an empty one matches every entry. `status` is a code
    (`429`), a class (`4xx`) or `none` (a dropped connection); `fault` is `any`, `none`
    or a fault's name (`error`, `timeout`)."""

    method: str = ""
    path: str = ""
    status: str = ""
    fault: str = ""

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.method and entry["method"] != self.method:
            return False
        if self.path and self.path not in entry["path"]:
            return False
        if self.status and not _status_matches(self.status, entry["status"]):
            return False
        if self.fault == "none":
            return entry["fault"] is None
        if self.fault == "any":
            return entry["fault"] is not None
        return not self.fault or entry["fault"] == self.fault


def _status_matches(wanted: str, status: int | None) -> bool:
    wanted = wanted.strip().lower()
    if wanted == "none":
        return status is None
    if status is None:
        return False
    if len(wanted) == 3 and wanted.endswith("xx"):
        return str(status)[0] == wanted[0]
    return str(status) == wanted


def filter_journal(
    entries: Sequence[dict[str, Any]], wanted: JournalFilter, number: int, size: int
) -> Page[dict[str, Any]]:
    """The page `number` of the matching entries, newest first."""
    newest_first = entries[::-1]
    if wanted == JournalFilter():
        return Page.of(newest_first, number, size)
    return Page.of([e for e in newest_first if wanted.matches(e)], number, size)


@dataclass(frozen=True)
class ThreadItem:
    """One bubble of a conversation: `out` from the shop, `in` from the person."""

    direction: str
    body: str
    at: datetime
    note: str  # the category and credits of a text sent, what a received text did


def conversation(book: MessageBook, subscriber: Subscriber) -> list[ThreadItem]:
    """The texts sent to and received from the subscriber's phone, oldest first, like a
    phone's thread; a request that was not sent shows why."""
    phone = subscriber.phone_number
    if phone is None:
        return []
    items: list[ThreadItem] = []
    for request in book.requests():
        if request.phone != phone and request.subscriber_id != subscriber.id:
            continue
        sent = request.sent_message
        if sent is not None:
            note = f"{sent.category} · {sent.credits_used} credit(s)"
            items.append(ThreadItem("out", sent.body, sent.created_at, note))
        elif request.status == "failed":
            reason = request.to_record()["reason"] or "not sent"
            items.append(ThreadItem("out failed", request.body, request.updated_at, reason))
    for text in book.received():
        if text.phone == phone:
            items.append(ThreadItem("in", text.body, text.created_at, text.outcome))
    items.sort(key=lambda item: item.at)
    return items


_PERSON_KEYS = ("subscriber_id", "pending_subscriber_id")
_PHONE_KEYS = ("phone_number", "from_number")


def deliveries_about(deliveries: Iterable[Delivery], subscriber: Subscriber) -> list[Delivery]:
    """The webhook deliveries whose event names the subscriber by id or phone, newest first."""
    found = []
    for delivery in deliveries:
        data = delivery.payload.get("event_data")
        if not isinstance(data, dict):
            continue
        by_id = any(data.get(key) == subscriber.id for key in _PERSON_KEYS)
        phone = subscriber.phone_number
        by_phone = phone is not None and any(data.get(key) == phone for key in _PHONE_KEYS)
        if by_id or by_phone:
            found.append(delivery)
    found.reverse()
    return found


def version(emulator: Emulator, shop_id: str) -> str:
    """A short text that changes whenever something the inbox shows changes: the live script
    asks for it and reloads the page's live part when it differs."""
    store, book = emulator.store_of(shop_id), emulator.messages_of(shop_id)
    deliveries = emulator.dispatcher.deliveries()
    attempts = sum(len(d.attempts) for d in deliveries)
    states = "".join(d.state[0] for d in deliveries)  # pending, delivered, failed, cancelled
    updated = max((s.updated_at for s in store), default=None)
    parts: list[object] = [
        emulator.journal.total,
        len(store),
        len(store.events()),
        len(book.requests()),
        len(book.sent_messages()),
        len(book.received()),
        attempts,
        states,
        updated.isoformat() if updated else "",
        emulator.faults.settings,
        emulator.rate_limiter.rps,
    ]
    return str(hash(tuple(map(str, parts))) & 0xFFFFFFFF)
