"""What the handle gives back: plain, typed copies of the emulator's admin answers.

Each record is read from the JSON of the admin surface (docs/design/emulator.md)
and ignores fields it does not know, so an emulator that learns new fields
does not break a user's tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

__all__ = [
    "ApiRequest",
    "CanSend",
    "DeliveryAttempt",
    "Event",
    "Faults",
    "InboundText",
    "Keyword",
    "Message",
    "MessageRequest",
    "Subscriber",
    "SubscriberSeed",
    "Subscriptions",
    "WebhookDelivery",
]


class CanSend(TypedDict):
    can_send: bool


class Subscriptions(TypedDict):
    """`{"promotional": {"can_send": …}, "transactional": {"can_send": …}}`, as the API shows it."""

    promotional: CanSend
    transactional: CanSend


class SubscriberSeed(TypedDict, total=False):
    """One subscriber to seed: the fields `POST /_emulator/subscribers` takes
    (docs/design/emulator.md)."""

    phone_number: str
    email: str
    properties: dict[str, Any]
    tags: list[str]
    id: str
    created_at: str
    shopify_customer_id: int | str
    subscriptions: Subscriptions


def _sendable() -> Subscriptions:
    """What a seeded subscriber has unless told otherwise: it may be sent both kinds."""
    return Subscriptions(promotional=CanSend(can_send=True), transactional=CanSend(can_send=True))


def _moment(text: object) -> datetime:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC)."""
    moment = datetime.fromisoformat(str(text))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Subscriber:
    """A subscriber as the emulator holds it (the API's Subscriber,
    docs/design/postscript-api.md#the-subscriber-object)."""

    id: str
    ps_id: int
    phone_number: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime
    shopify_customer_id: int | str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    subscriptions: Subscriptions = field(default_factory=_sendable)
    data: dict[str, Any] = field(default_factory=dict)
    pending: bool = False  # created through the API, not confirmed by text yet

    @property
    def can_receive_promotional(self) -> bool:
        return bool(self.subscriptions["promotional"]["can_send"]) and not self.pending

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Subscriber:
        return cls(
            id=doc["id"],
            ps_id=doc["ps_id"],
            phone_number=doc.get("phone_number"),
            email=doc.get("email"),
            created_at=_moment(doc["created_at"]),
            updated_at=_moment(doc["updated_at"]),
            shopify_customer_id=doc.get("shopify_customer_id"),
            properties=doc.get("properties") or {},
            tags=doc.get("tags") or [],
            subscriptions=doc.get("subscriptions") or _sendable(),
            data=doc.get("data") or {},
            pending=bool(doc.get("pending", False)),
        )


@dataclass(frozen=True)
class Event:
    """A custom event as it was posted (`POST /api/v2/events`), plus what the emulator added.

    `occurred_at` is kept exactly as the code under test sent it (`2026-01-31 12:00:00.000000`, UTC,
    docs/design/postscript-api.md#calls); the subscriber is named the way the request named it, by
    `subscriber_id`, `phone` or `email`, and `recipient_id` is the subscriber the emulator judged it
    for (None when the event named none, which the default mode accepts)."""

    type: str
    event_id: str
    received_at: datetime
    subscriber_id: str | None = None
    phone: str | None = None
    email: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    occurred_at: str | None = None
    external_id: str | None = None
    recipient_id: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Event:
        return cls(
            type=doc["type"],
            event_id=doc["event_id"],
            received_at=_moment(doc["received_at"]),
            subscriber_id=doc.get("subscriber_id"),
            phone=doc.get("phone"),
            email=doc.get("email"),
            properties=doc.get("properties") or {},
            occurred_at=doc.get("occurred_at"),
            external_id=doc.get("external_id"),
            recipient_id=doc.get("recipient_id"),
        )


@dataclass(frozen=True)
class Keyword:
    """A keyword of a shop, as get-keywords shows it (`Postscript.add_keyword`'s answer)."""

    id: str
    keyword: str
    created_at: datetime
    triggered_count: int
    updated_at: datetime

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Keyword:
        return cls(
            id=doc["id"],
            keyword=doc["keyword"],
            created_at=_moment(doc["created_at"]),
            triggered_count=int(doc["triggered_count"]),
            updated_at=_moment(doc["updated_at"]),
        )


@dataclass(frozen=True)
class ApiRequest:
    """One API call the emulator answered (the journal, `GET /_emulator/requests`).

    `status` is None when a timeout fault dropped the connection; `fault` says
    which fault, if any, answered instead of the API (`"error"`, `"timeout"`).
    """

    method: str
    path: str
    query: str
    status: int | None
    time: datetime
    duration_ms: float
    fault: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ApiRequest:
        return cls(
            method=doc["method"],
            path=doc["path"],
            query=doc.get("query", ""),
            status=doc.get("status"),
            time=_moment(doc["time"]),
            duration_ms=float(doc.get("duration_ms", 0.0)),
            fault=doc.get("fault"),
        )


@dataclass(frozen=True)
class Faults:
    """The emulator's fault setting and rate limit (`GET /_emulator/faults`,
    docs/design/emulator.md)."""

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500,)
    latency_ms: tuple[float, float] = (0.0, 0.0)
    timeout_rate: float = 0.0
    timeout_ms: float = 3000.0
    seed: int | None = None
    rate_limit_rps: float = 15.0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Faults:
        low, high = doc.get("latency_ms", (0.0, 0.0))
        return cls(
            error_rate=float(doc.get("error_rate", 0.0)),
            error_statuses=tuple(doc.get("error_statuses", (500,))),
            latency_ms=(float(low), float(high)),
            timeout_rate=float(doc.get("timeout_rate", 0.0)),
            timeout_ms=float(doc.get("timeout_ms", 3000.0)),
            seed=doc.get("seed"),
            rate_limit_rps=float(doc.get("rate_limit_rps", 15.0)),
        )


@dataclass(frozen=True)
class Message:
    """A text the emulator sent (what the person's phone got): a sent message,
    docs/design/postscript-api.md#calls."""

    id: str
    phone: str
    body: str
    category: str
    subscriber_id: str
    credits_used: int
    created_at: datetime
    media_url: str | None = None
    message_request_id: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Message:
        return cls(
            id=doc["id"],
            phone=doc["phone"],
            body=doc["body"],
            category=doc.get("category", "promotional"),
            subscriber_id=doc["subscriber_id"],
            credits_used=int(doc.get("credits_used", 1)),
            created_at=_moment(doc["created_at"]),
            media_url=doc.get("media_url"),
            message_request_id=doc.get("message_request_id"),
        )


@dataclass(frozen=True)
class MessageRequest:
    """A create-message call: `status` is `scheduled`, `sent` or `failed`; `reason` says why
    one failed (docs/design/emulator-choices.md#message-statuses)."""

    id: str
    body: str
    category: str
    status: str
    status_code: int
    subscriber_id: str | None
    phone: str | None
    created_at: datetime
    scheduled_at: datetime | None = None
    sent_message_id: str | None = None
    reason: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MessageRequest:
        sent = doc.get("sent_message")
        scheduled = doc.get("scheduled_at")
        return cls(
            id=doc["id"],
            body=doc["body"],
            category=doc["category"],
            status=doc["status"],
            status_code=int(doc.get("status_code", 0)),
            subscriber_id=doc.get("subscriber_id"),
            phone=doc.get("phone"),
            created_at=_moment(doc["created_at"]),
            scheduled_at=_moment(scheduled) if scheduled else None,
            sent_message_id=sent["id"] if sent else None,
            reason=doc.get("reason"),
        )


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a webhook delivery: the status it got, or the error when none."""

    attempt: int
    time: datetime
    status: int | None
    error: str | None = None
    duration_ms: float = 0.0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DeliveryAttempt:
        return cls(
            attempt=int(doc["attempt"]),
            time=_moment(doc["time"]),
            status=doc.get("status"),
            error=doc.get("error"),
            duration_ms=float(doc.get("duration_ms", 0.0)),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One event on its way to one subscription (`state`: pending, delivered, failed,
    cancelled), with every attempt so far; `payload` is the documented envelope."""

    id: str
    webhook_id: str
    event: str
    callback_url: str
    payload: dict[str, Any]
    state: str
    attempts: tuple[DeliveryAttempt, ...] = ()

    @property
    def event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.payload.get("event_data", {})
        return data

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> WebhookDelivery:
        return cls(
            id=doc["id"],
            webhook_id=doc["webhook_id"],
            event=doc["event"],
            callback_url=doc["callback_url"],
            payload=doc.get("payload") or {},
            state=doc["state"],
            attempts=tuple(DeliveryAttempt.from_json(a) for a in doc.get("attempts", [])),
        )


@dataclass(frozen=True)
class InboundText:
    """What a text from a phone did (`confirmed`, `opted_out`, `signup_cancelled` or
    `message`), the subscriber it concerned as it is now, and the events it raised."""

    outcome: str
    subscriber: Subscriber | None
    events: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InboundText:
        subscriber = doc.get("subscriber")
        return cls(
            outcome=doc["outcome"],
            subscriber=Subscriber.from_json(subscriber) if subscriber else None,
            events=tuple(doc.get("events", [])),
        )
