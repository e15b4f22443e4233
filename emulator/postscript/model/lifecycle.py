"""The subscriber's side of the conversation: texts a person sends to the shop.

`POST /_emulator/inbound` stands in for a person's phone (docs/design/emulator.md,
docs/design/emulator-choices.md#opt-in and "inbound-texts"):

- `Y` or `YES` (any case, surrounding spaces ignored) from the phone of a
  subscriber pending double opt-in confirms it: it becomes active under a new
  `s_` id and `shop.subscriber.opt_in` reports that id;
- an opt-out word (`STOP`, `STOPALL`, `UNSUBSCRIBE`, `CANCEL`, `END`, `QUIT`)
  opts an active subscriber out of everything (`shop.subscriber.opt_out`, and
  `shop.incoming_message` with `is_opt_out: true`); from a pending one it
  cancels the signup instead, reported only as that incoming message;
- any other text is `shop.incoming_message`.

Compliance unsubscribe and redact report `shop.subscriber.opt_out` too,
through `report_opt_outs`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber
from postscript_audience_lab.emulator.postscript.model.webhooks import event_time

if TYPE_CHECKING:
    from postscript_audience_lab.emulator.postscript.emulator import Emulator

__all__ = [
    "CONFIRM_WORDS",
    "OPT_OUT_WORDS",
    "InboundOutcome",
    "receive_text",
    "report_opt_outs",
    "subscriber_data",
]

CONFIRM_WORDS = frozenset({"Y", "YES"})
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})


@dataclass
class InboundOutcome:
    """What a text did: `confirmed`, `opted_out`, `signup_cancelled` or `message`."""

    outcome: str
    subscriber: Subscriber | None
    events: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "subscriber": self.subscriber.to_record() if self.subscriber else None,
            "events": self.events,
        }


def subscriber_data(subscriber: Subscriber, shop_id: str, **extra: Any) -> dict[str, Any]:
    """`event_data` of opt-in and opt-out: who, in which shop, when
    (docs/design/emulator-choices.md)."""
    return {
        "subscriber_id": subscriber.id,
        "shop_id": shop_id,
        "phone_number": subscriber.phone_number,
        "email": subscriber.email,
        "shopify_customer_id": subscriber.shopify_customer_id,
        "created_at": event_time(),
        **extra,
    }


def _incoming_data(
    shop_id: str, from_number: str, body: str, subscriber: Subscriber | None, *, opt_out: bool
) -> dict[str, Any]:
    """The documented `shop.incoming_message` event_data."""
    active = subscriber is not None and not subscriber.pending
    return {
        "id": f"im_{uuid.uuid4().hex[:16]}",
        "subscriber_id": subscriber.id if active and subscriber else None,
        "shop_id": shop_id,
        "is_opt_out": opt_out,
        "shopify_customer_id": subscriber.shopify_customer_id if active and subscriber else None,
        "from_number": from_number,
        "created_at": event_time(),
        "body": body,
    }


def receive_text(emulator: Emulator, shop_id: str, from_number: str, body: str) -> InboundOutcome:
    """A text from `from_number` (E.164) to the shop: confirm, opt out, or a message. The
    shop's message book keeps it, so the conversation reads both ways."""
    outcome = _receive(emulator, shop_id, from_number, body)
    emulator.messages_of(shop_id).receive(from_number, body, outcome.outcome, emulator.clock.now())
    return outcome


def _receive(emulator: Emulator, shop_id: str, from_number: str, body: str) -> InboundOutcome:
    store = emulator.store_of(shop_id)
    word = body.strip().upper()
    with store.lock:
        person = store.find_by_phone_digits(from_number.lstrip("+"), pending=True)
        if person is not None and person.pending and word in CONFIRM_WORDS:
            active = store.confirm(person)
            data = subscriber_data(
                active,
                shop_id,
                keyword_id=active.data.get("keyword_id"),
                pending_subscriber_id=person.id,
            )
            emulator.emit(shop_id, "shop.subscriber.opt_in", data)
            return InboundOutcome("confirmed", active, ["shop.subscriber.opt_in"])
        if word in OPT_OUT_WORDS:
            return _opt_out(emulator, shop_id, from_number, body, person)
    emulator.emit(
        shop_id,
        "shop.incoming_message",
        _incoming_data(shop_id, from_number, body, person, opt_out=False),
    )
    return InboundOutcome("message", person, ["shop.incoming_message"])


def _opt_out(
    emulator: Emulator, shop_id: str, from_number: str, body: str, person: Subscriber | None
) -> InboundOutcome:
    store = emulator.store_of(shop_id)
    events = []
    if person is not None and person.pending:
        store.discard(person)
        outcome, person = "signup_cancelled", None
    elif person is not None:
        if store.unsubscribe(person):
            emulator.emit(
                shop_id,
                "shop.subscriber.opt_out",
                subscriber_data(person, shop_id, source="inbound_text"),
            )
            events.append("shop.subscriber.opt_out")
        outcome = "opted_out"
    else:
        outcome = "message"
    emulator.emit(
        shop_id,
        "shop.incoming_message",
        _incoming_data(shop_id, from_number, body, person, opt_out=True),
    )
    return InboundOutcome(outcome, person, [*events, "shop.incoming_message"])


def report_opt_outs(
    emulator: Emulator, shop_id: str, subscribers: list[Subscriber], source: str
) -> None:
    """`shop.subscriber.opt_out` for each subscriber a compliance call opted out."""
    for subscriber in subscribers:
        emulator.emit(
            shop_id, "shop.subscriber.opt_out", subscriber_data(subscriber, shop_id, source=source)
        )
