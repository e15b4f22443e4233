"""Which subscriber(s) a body names (docs/design/emulator-choices.md).

- An event is for one subscriber. Of the identifiers it gives, the first of
  `subscriber_id`, `phone`, `email` that names a subscriber wins
  ("event-identifiers"): an id is unique, a phone is unique in a shop, an
  email may be shared (then the earliest-created subscriber has it). Strict,
  every identifier given must name that same subscriber.
- A compliance call (unsubscribe, redact) acts on every subscriber any of its
  identifiers names ("compliance-targets"): a request to forget a person must
  not leave one of their records behind.

Naming nobody is a 404 (error_code 3001) either way.
"""

from __future__ import annotations

from postscript_audience_lab.emulator.postscript.errors import ResourceNotFound, invalid
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber
from postscript_audience_lab.emulator.postscript.web.bodies import Identifiers

__all__ = ["compliance_subscribers", "event_subscriber"]


def _by_id(store: Store, subscriber_id: str | None, *, pending: bool) -> list[Subscriber]:
    if subscriber_id is None:
        return []
    try:
        return [store.get_any(subscriber_id) if pending else store.get(subscriber_id)]
    except ResourceNotFound:
        return []


def _by_phone(store: Store, digits: str | None, *, pending: bool) -> list[Subscriber]:
    found = store.find_by_phone_digits(digits, pending=pending) if digits else None
    return [] if found is None else [found]


def _candidates(
    store: Store, ids: Identifiers, *, pending: bool = False
) -> list[tuple[str, list[Subscriber]]]:
    """Per identifier given, in order of precedence, the subscribers it names.

    Pending subscribers count only when `pending` (compliance acts on them too).
    """
    email, shopify = ids.email, ids.shopify_customer_id
    named = [
        ("subscriber_id", ids.subscriber_id, _by_id(store, ids.subscriber_id, pending=pending)),
        ("phone", ids.phone_digits, _by_phone(store, ids.phone_digits, pending=pending)),
        ("email", email, store.find_by_email(email, pending=pending) if email else []),
        (
            "shopify_customer_id",
            shopify,
            store.find_by_shopify_id(shopify, pending=pending) if shopify else [],
        ),
    ]
    return [(name, found) for name, value, found in named if value is not None]


def event_subscriber(store: Store, ids: Identifiers, *, strict: bool) -> Subscriber:
    """The one subscriber an event is for, or a 404; strict, a 400 when identifiers disagree."""
    with store.lock:
        candidates = _candidates(store, ids)
    winner = next((found[0] for _, found in candidates if found), None)
    if winner is None:
        raise ResourceNotFound("subscriber")
    if strict:
        for name, found in candidates:
            if all(subscriber is not winner for subscriber in found):
                raise invalid(
                    ["body", name],
                    f"does not name subscriber {winner.id}, whom the other identifiers name; "
                    "give identifiers of one subscriber",
                    "value_error.conflict",
                )
    return winner


def compliance_subscribers(store: Store, ids: Identifiers) -> list[Subscriber]:
    """Every subscriber any identifier names, in creation order, or a 404."""
    with store.lock:
        found = {s.id: s for _, named in _candidates(store, ids, pending=True) for s in named}
    if not found:
        raise ResourceNotFound("subscriber")
    return sorted(found.values(), key=lambda s: s.ps_id)
