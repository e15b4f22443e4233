"""The Subscriber resource as the emulator keeps it and as the API shows it."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "MAX_CUSTOM_PROPERTIES",
    "Subscriber",
    "format_time",
    "new_pending_id",
    "new_subscriber_id",
    "parse_time",
    "utc_now",
]

MAX_CUSTOM_PROPERTIES = 50


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_subscriber_id() -> str:
    return f"s_{uuid.uuid4().hex[:24]}"


def new_pending_id() -> str:
    """The id a subscriber has while it waits to confirm by text
    (docs/design/emulator-choices.md#opt-in)."""
    return f"sp_{uuid.uuid4().hex[:24]}"


@functools.lru_cache(maxsize=65_536)
def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. `2026-01-02T03:04:05.000000+00:00`.

    Cached: every subscriber answered formats its two times, and they rarely change
    (equal moments in any offset give the same text, so the cache cannot mix them up).
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """ISO 8601 (a `Z` suffix or an offset; naive means UTC); raises ValueError.

    A moment that is a valid date only in its own offset (year 9999 at -05:00,
    year 1 at +05:00) falls outside the calendar in UTC: a ValueError too.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text.strip()} is outside years 1 to 9999 in UTC") from None


@dataclass(slots=True)
class Subscriber:
    id: str
    ps_id: int
    phone_number: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime
    shopify_customer_id: int | str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    promotional_can_send: bool = True
    transactional_can_send: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    pending: bool = False  # created by the API, not confirmed by text yet: hidden from the API

    def touch(self) -> None:
        """Bump `updated_at`, strictly later than before even within one clock tick."""
        now = utc_now()
        self.updated_at = max(now, self.updated_at + timedelta(microseconds=1))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ps_id": self.ps_id,
            "phone_number": self.phone_number,
            "email": self.email,
            "shopify_customer_id": self.shopify_customer_id,
            "properties": self.properties,
            "tags": self.tags,
            "subscriptions": {
                "promotional": {"can_send": self.promotional_can_send},
                "transactional": {"can_send": self.transactional_can_send},
            },
            "data": self.data,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
        }

    def to_record(self) -> dict[str, Any]:
        """What the state file and the admin surface keep: the API's view, plus `pending`."""
        return {**self.to_json(), "pending": True} if self.pending else self.to_json()

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Subscriber:
        subscriptions = doc["subscriptions"]
        return cls(
            id=doc["id"],
            ps_id=doc["ps_id"],
            phone_number=doc["phone_number"],
            email=doc["email"],
            created_at=parse_time(doc["created_at"]),
            updated_at=parse_time(doc["updated_at"]),
            shopify_customer_id=doc["shopify_customer_id"],
            properties=doc["properties"],
            tags=doc["tags"],
            promotional_can_send=subscriptions["promotional"]["can_send"],
            transactional_can_send=subscriptions["transactional"]["can_send"],
            data=doc["data"],
            pending=bool(doc.get("pending", False)),
        )
