"""One shop's subscribers and events, indexed for O(1) lookups.

Indexes: id, ps_id, phone digits, lower-cased email and Shopify customer id.
Every mutation goes through this class, under one lock, and is written
through to the state file when there is one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import (
    InvalidInput,
    ResourceNotFound,
    problem,
)
from postscript_audience_lab.emulator.postscript.model.phones import lookup_digits
from postscript_audience_lab.emulator.postscript.model.shops import DEFAULT_SHOP_ID
from postscript_audience_lab.emulator.postscript.model.state_file import StateFile
from postscript_audience_lab.emulator.postscript.model.subscriber import (
    MAX_CUSTOM_PROPERTIES,
    Subscriber,
    format_time,
    new_pending_id,
    new_subscriber_id,
    utc_now,
)

__all__ = ["Store", "SubscriberDraft", "SubscriberPatch"]


@dataclass
class SubscriberDraft:
    """A subscriber about to be created, already validated and normalised."""

    phone_number: str | None
    email: str | None = None
    shopify_customer_id: int | str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    id: str | None = None
    created_at: datetime | None = None
    promotional_can_send: bool = True
    transactional_can_send: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    # created by the API: waits for a confirming text (docs/design/emulator-choices.md#opt-in)
    pending: bool = False
    loc: list[str | int] = field(default_factory=lambda: ["body"])  # where to point errors


@dataclass
class SubscriberPatch:
    properties: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    email: str | None = None


class _MultiIndex:
    """key -> ids in insertion order (an email may belong to several subscribers)."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, None]] = {}

    def add(self, key: str, subscriber_id: str) -> None:
        self._ids.setdefault(key, {})[subscriber_id] = None

    def remove(self, key: str, subscriber_id: str) -> None:
        ids = self._ids.get(key)
        if ids is not None:
            ids.pop(subscriber_id, None)
            if not ids:
                del self._ids[key]

    def get(self, key: str) -> Iterable[str]:
        return self._ids.get(key, {}).keys()

    def clear(self) -> None:
        self._ids.clear()


def _digits(e164: str | None) -> str | None:
    return e164[1:] if e164 else None


def _email_key(email: str | None) -> str | None:
    return email.lower() if email else None


def _event_names(event: dict[str, Any], subscriber: Subscriber, region: str) -> bool:
    """Whether a stored event was for `subscriber` or names it by any of its identifiers."""
    if subscriber.id in (event.get("recipient_id"), event.get("subscriber_id")):
        return True
    phone, email = event.get("phone"), event.get("email")
    digits = _digits(subscriber.phone_number)
    if digits is not None and isinstance(phone, str) and lookup_digits(phone, region) == digits:
        return True
    own = _email_key(subscriber.email)
    return own is not None and isinstance(email, str) and email.lower() == own


class Store:
    def __init__(self, state_file: StateFile | None = None, shop: str = DEFAULT_SHOP_ID) -> None:
        self.lock = threading.RLock()
        self.shop = shop
        self._state_file = state_file
        self._subscribers: dict[str, Subscriber] = {}
        self._by_ps_id: dict[int, str] = {}
        self._by_phone: dict[str, str] = {}
        self._by_email = _MultiIndex()
        self._by_shopify = _MultiIndex()
        self._events: list[dict[str, Any]] = []
        self._next_ps_id = 1
        if state_file is not None:
            subscribers, events = state_file.load(shop)
            for doc in subscribers:
                self._index(Subscriber.from_json(doc))
            self._events.extend(events)

    # -- reading -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._subscribers)

    def __iter__(self) -> Iterator[Subscriber]:
        return iter(list(self._subscribers.values()))

    def get(self, subscriber_id: str) -> Subscriber:
        """A subscriber by id; a pending one is not found by its pending id
        (docs/design/emulator-choices.md)."""
        subscriber = self._subscribers.get(subscriber_id)
        if subscriber is None or subscriber.pending:
            raise ResourceNotFound("subscriber")
        return subscriber

    def get_any(self, subscriber_id: str) -> Subscriber:
        """A subscriber by id, pending or not."""
        subscriber = self._subscribers.get(subscriber_id)
        if subscriber is None:
            raise ResourceNotFound("subscriber")
        return subscriber

    # The finders leave pending subscribers out unless asked (`pending=True`).

    def find_by_phone_digits(self, digits: str, *, pending: bool = False) -> Subscriber | None:
        subscriber_id = self._by_phone.get(digits)
        if subscriber_id is None:
            return None
        found = self._subscribers[subscriber_id]
        return found if pending or not found.pending else None

    def find_by_email(self, email: str, *, pending: bool = False) -> list[Subscriber]:
        found = (self._subscribers[i] for i in self._by_email.get(email.lower()))
        return [s for s in found if pending or not s.pending]

    def find_by_shopify_id(self, customer_id: str, *, pending: bool = False) -> list[Subscriber]:
        found = (self._subscribers[i] for i in self._by_shopify.get(customer_id))
        return [s for s in found if pending or not s.pending]

    def find_by_ps_id(self, ps_id: int) -> Subscriber | None:
        subscriber_id = self._by_ps_id.get(ps_id)
        found = None if subscriber_id is None else self._subscribers[subscriber_id]
        return None if found is None or found.pending else found

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def events_of(self, subscriber: Subscriber, region: str) -> list[dict[str, Any]]:
        """The stored events judged for `subscriber` or naming it by phone or email."""
        with self.lock:
            return [e for e in self._events if _event_names(e, subscriber, region)]

    def keyword_uses(self, keyword_id: str) -> int:
        """How many subscribers were created through the keyword (its `triggered_count`)."""
        with self.lock:
            return sum(s.data.get("keyword_id") == keyword_id for s in self._subscribers.values())

    # -- writing -----------------------------------------------------------

    def create(self, drafts: list[SubscriberDraft]) -> list[Subscriber]:
        """Create all drafts or none: a duplicate id or phone number is a 400."""
        with self.lock:
            self._check_unique(drafts)
            now = utc_now()
            created = []
            for draft in drafts:
                created_at = draft.created_at or now
                new_id = new_pending_id() if draft.pending else new_subscriber_id()
                subscriber = Subscriber(
                    id=draft.id or new_id,
                    ps_id=self._next_ps_id,
                    phone_number=draft.phone_number,
                    email=draft.email,
                    created_at=created_at,
                    updated_at=max(created_at, now),
                    shopify_customer_id=draft.shopify_customer_id,
                    properties=dict(draft.properties),
                    tags=list(dict.fromkeys(draft.tags)),
                    promotional_can_send=draft.promotional_can_send,
                    transactional_can_send=draft.transactional_can_send,
                    data=dict(draft.data),
                    pending=draft.pending,
                )
                self._index(subscriber)
                created.append(subscriber)
            self._save(created)
            return created

    def patch(self, subscriber_id: str, patch: SubscriberPatch) -> Subscriber:
        """Merge properties key by key, add tags, and set the email as documented: only
        when the subscriber has none or no Shopify customer is linked yet."""
        with self.lock:
            subscriber = self.get(subscriber_id)
            merged = {**subscriber.properties, **patch.properties}
            if len(merged) > MAX_CUSTOM_PROPERTIES:
                raise InvalidInput(
                    [
                        problem(
                            ["body", "properties"],
                            f"a subscriber can have at most {MAX_CUSTOM_PROPERTIES} custom "
                            f"properties; this update would make {len(merged)}",
                            "value_error.too_many_properties",
                        )
                    ]
                )
            subscriber.properties = merged
            subscriber.tags = list(dict.fromkeys([*subscriber.tags, *patch.tags]))
            if patch.email and (not subscriber.email or subscriber.shopify_customer_id is None):
                self._unindex(subscriber)
                subscriber.email = patch.email
                self._index(subscriber)
            subscriber.touch()
            self._save([subscriber])
            return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> bool:
        """An opt-out: nothing may be sent to this subscriber any more.

        True when it was an opted-in subscriber that could be sent something
        until now (Postscript then reports `shop.subscriber.opt_out`).
        """
        with self.lock:
            was_in = not subscriber.pending and (
                subscriber.promotional_can_send or subscriber.transactional_can_send
            )
            subscriber.promotional_can_send = False
            subscriber.transactional_can_send = False
            subscriber.touch()
            self._save([subscriber])
            return was_in

    def confirm(self, pending: Subscriber) -> Subscriber:
        """A pending subscriber confirmed by text: it becomes active under a new `s_` id.

        The pending id is forgotten; `ps_id`, identifiers, properties, tags,
        `data` and `created_at` carry over, and both subscriptions may send.
        """
        with self.lock:
            assert pending.pending, "only a pending subscriber confirms"
            self._forget(pending)
            active = Subscriber(
                id=new_subscriber_id(),
                ps_id=pending.ps_id,
                phone_number=pending.phone_number,
                email=pending.email,
                created_at=pending.created_at,
                updated_at=pending.updated_at,
                shopify_customer_id=pending.shopify_customer_id,
                properties=dict(pending.properties),
                tags=list(pending.tags),
                data=dict(pending.data),
            )
            active.touch()
            self._index(active)
            self._save([active])
            return active

    def discard(self, pending: Subscriber) -> None:
        """Forget a pending subscriber (it answered STOP instead of confirming)."""
        with self.lock:
            assert pending.pending, "only a pending subscriber is discarded"
            self._forget(pending)

    def _forget(self, subscriber: Subscriber) -> None:
        self._unindex(subscriber)
        del self._subscribers[subscriber.id]
        if self._by_ps_id.get(subscriber.ps_id) == subscriber.id:
            del self._by_ps_id[subscriber.ps_id]
        if self._state_file is not None:
            self._state_file.delete_subscriber(self.shop, subscriber.id)

    def redact(self, subscribers: list[Subscriber], region: str) -> None:
        """Forget their personal data and opt them out; scrub the events that name them."""
        with self.lock:
            for subscriber in subscribers:
                self._scrub_events_of(subscriber, region)
                self._unindex(subscriber)
                subscriber.phone_number = subscriber.email = subscriber.shopify_customer_id = None
                subscriber.properties, subscriber.tags = {}, []
                subscriber.promotional_can_send = subscriber.transactional_can_send = False
                subscriber.touch()
                self._index(subscriber)
            self._save(subscribers)
            if self._state_file is not None:
                self._state_file.replace_events(self.shop, self._events)

    def _scrub_events_of(self, subscriber: Subscriber, region: str) -> None:
        for event in self._events:
            if _event_names(event, subscriber, region):
                event.update({key: None for key in ("phone", "email") if key in event})
                if "properties" in event:
                    event["properties"] = {}

    def record_event(self, body: dict[str, Any], recipient: Subscriber | None) -> str:
        """Keep the event as posted, plus its id, when it came and whom it was judged for
        (None: an event naming no subscriber)."""
        with self.lock:
            event_id = f"ev_{uuid.uuid4().hex[:24]}"
            event = {
                **body,
                "event_id": event_id,
                "received_at": format_time(utc_now()),
                "recipient_id": None if recipient is None else recipient.id,
            }
            self._events.append(event)
            if self._state_file is not None:
                self._state_file.save_event(self.shop, event)
            return event_id

    def reset(self) -> None:
        with self.lock:
            self._subscribers.clear()
            self._by_ps_id.clear()
            self._by_phone.clear()
            self._by_email.clear()
            self._by_shopify.clear()
            self._events.clear()
            self._next_ps_id = 1
            if self._state_file is not None:
                self._state_file.clear(self.shop)

    # -- internals ---------------------------------------------------------

    def _check_unique(self, drafts: list[SubscriberDraft]) -> None:
        seen_ids: set[str] = set()
        seen_phones: set[str] = set()
        problems = []
        for draft in drafts:
            if draft.id is not None:
                if draft.id in self._subscribers or draft.id in seen_ids:
                    problems.append(
                        problem(
                            [*draft.loc, "id"],
                            f"a subscriber with id {draft.id!r} already exists",
                            "value_error.duplicate",
                        )
                    )
                seen_ids.add(draft.id)
            digits = _digits(draft.phone_number)
            if digits is not None:
                if digits in self._by_phone or digits in seen_phones:
                    problems.append(
                        problem(
                            [*draft.loc, "phone_number"],
                            f"a subscriber with phone number {draft.phone_number} already exists",
                            "value_error.duplicate",
                        )
                    )
                seen_phones.add(digits)
        if problems:
            raise InvalidInput(problems)

    def _index(self, subscriber: Subscriber) -> None:
        self._subscribers[subscriber.id] = subscriber
        self._by_ps_id[subscriber.ps_id] = subscriber.id
        self._next_ps_id = max(self._next_ps_id, subscriber.ps_id + 1)
        digits = _digits(subscriber.phone_number)
        if digits is not None:
            self._by_phone[digits] = subscriber.id
        email = _email_key(subscriber.email)
        if email is not None:
            self._by_email.add(email, subscriber.id)
        if subscriber.shopify_customer_id is not None:
            self._by_shopify.add(str(subscriber.shopify_customer_id), subscriber.id)

    def _unindex(self, subscriber: Subscriber) -> None:
        """Drop the phone, email and Shopify entries (`_index` puts them back)."""
        digits = _digits(subscriber.phone_number)
        if digits is not None and self._by_phone.get(digits) == subscriber.id:
            del self._by_phone[digits]
        email = _email_key(subscriber.email)
        if email is not None:
            self._by_email.remove(email, subscriber.id)
        if subscriber.shopify_customer_id is not None:
            self._by_shopify.remove(str(subscriber.shopify_customer_id), subscriber.id)

    def _save(self, subscribers: list[Subscriber]) -> None:
        if self._state_file is not None:
            self._state_file.save_subscribers(self.shop, [s.to_record() for s in subscribers])
