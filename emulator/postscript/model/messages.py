"""Message requests and the texts they become (create-message, get-message-request,
get-sent-message; docs/design/postscript-api.md#calls and
docs/design/emulator-choices.md#message-statuses).

A request is judged when it is due: at once, or when the emulator's clock
reaches its `scheduled_at`. If its subscriber may receive its category, a
sent message is made (what the person's phone would show); otherwise the
request fails with a `status_code` saying why, and nothing is sent. Each shop
has one `MessageBook`; nothing here touches the network.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import ResourceNotFound
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber, format_time

__all__ = [
    "CATEGORIES",
    "MessageBook",
    "MessageDraft",
    "MessageRequest",
    "ReceivedText",
    "SentMessage",
    "StatusCode",
    "credits_for",
]

CATEGORIES = ("promotional", "transactional", "conversational")

# The GSM 03.38 basic character set: a text made only of these is sent as GSM-7.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ\N{SECTION SIGN}¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each
MMS_CREDITS = 3


class StatusCode(IntEnum):
    """`status_code` of a message request (docs/design/emulator-choices.md#message-statuses)."""

    OK = 0
    OPTED_OUT = 1  # the subscriber may not receive this category
    NOT_CONFIRMED = 2  # the phone's subscriber is still pending double opt-in
    UNREACHABLE = 3  # the subscriber has no phone any more (redacted) or is gone


_REASONS = {
    StatusCode.OPTED_OUT: "the subscriber may not receive this category of message",
    StatusCode.NOT_CONFIRMED: "the subscriber has not confirmed by text yet",
    StatusCode.UNREACHABLE: "the subscriber has no phone number any more",
}


def credits_for(body: str, media_url: str | None) -> int:
    """Message segments as carriers count them; an MMS (with media) costs `MMS_CREDITS`."""
    if media_url:
        return MMS_CREDITS
    if all(ch in _GSM7 or ch in _GSM7_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)  # UTF-16 code units
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


@dataclass(frozen=True)
class MessageDraft:
    """A create-message body, checked: who, what, which category and when."""

    body: str
    category: str
    subscriber_id: str | None
    phone_digits: str | None
    media_url: str | None = None
    scheduled_at: datetime | None = None


@dataclass
class SentMessage:
    id: str
    message_request_id: str
    shop_id: str
    subscriber_id: str
    phone: str
    body: str
    category: str
    media_url: str | None
    credits_used: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "created_at": format_time(self.created_at),
            "credits_used": self.credits_used,
            "id": self.id,
            "media_url": self.media_url,
            "phone": self.phone,
            "shop_id": self.shop_id,
            "subscriber_id": self.subscriber_id,
        }

    def to_record(self) -> dict[str, Any]:
        return {
            **self.to_json(),
            "category": self.category,
            "message_request_id": self.message_request_id,
        }


@dataclass
class MessageRequest:
    id: str
    body: str
    category: str
    subscriber_id: str | None
    phone: str | None
    media_url: str | None
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    status: str = "scheduled"  # then "sent" or "failed"
    status_code: StatusCode = StatusCode.OK
    sent_message: SentMessage | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "category": self.category,
            "created_at": format_time(self.created_at),
            "id": self.id,
            "phone": self.phone,
            "scheduled_at": format_time(self.scheduled_at) if self.scheduled_at else None,
            "sent_message": self.sent_message.to_json() if self.sent_message else None,
            "status": self.status,
            "status_code": int(self.status_code),
            "subscriber_id": self.subscriber_id,
            "updated_at": format_time(self.updated_at),
        }

    def to_record(self) -> dict[str, Any]:
        reason = _REASONS.get(self.status_code)
        return {**self.to_json(), "media_url": self.media_url, "reason": reason}


@dataclass(frozen=True)
class ReceivedText:
    """A text a person's phone sent to the shop (`POST /_emulator/inbound`), kept so that a
    conversation reads both ways; `outcome` is what it did (lifecycle.InboundOutcome)."""

    id: str
    phone: str
    body: str
    outcome: str
    created_at: datetime


class MessageBook:
    """One shop's message requests, sent messages and received texts, in the order they
    were made."""

    def __init__(self, shop_id: str) -> None:
        self.shop_id = shop_id
        self.lock = threading.RLock()
        self._requests: dict[str, MessageRequest] = {}
        self._sent: dict[str, SentMessage] = {}
        self._received: list[ReceivedText] = []

    def submit(
        self, draft: MessageDraft, recipient: Subscriber, store: Store, now: datetime
    ) -> MessageRequest:
        """Accept a request for `recipient` (active or pending); judge it now if it is due."""
        with self.lock:
            request = MessageRequest(
                id=f"mr_{uuid.uuid4().hex[:24]}",
                body=draft.body,
                category=draft.category,
                subscriber_id=None if recipient.pending else recipient.id,
                phone=recipient.phone_number,
                media_url=draft.media_url,
                scheduled_at=draft.scheduled_at,
                created_at=now,
                updated_at=now,
            )
            self._requests[request.id] = request
            if draft.scheduled_at is None or draft.scheduled_at <= now:
                self._judge(request, store, now)
            return request

    def request(self, request_id: str) -> MessageRequest:
        found = self._requests.get(request_id)
        if found is None:
            raise ResourceNotFound("message request")
        return found

    def sent(self, sent_id: str) -> SentMessage:
        found = self._sent.get(sent_id)
        if found is None:
            raise ResourceNotFound("sent message")
        return found

    def requests(self) -> list[MessageRequest]:
        with self.lock:
            return list(self._requests.values())

    def sent_messages(self) -> list[SentMessage]:
        with self.lock:
            return list(self._sent.values())

    def receive(self, phone: str, body: str, outcome: str, now: datetime) -> ReceivedText:
        """Keep a text from `phone` (E.164) to the shop."""
        text = ReceivedText(f"rt_{uuid.uuid4().hex[:24]}", phone, body, outcome, now)
        with self.lock:
            self._received.append(text)
        return text

    def received(self) -> list[ReceivedText]:
        with self.lock:
            return list(self._received)

    def send_due(self, store: Store, now: datetime) -> None:
        """Judge every scheduled request whose time has come on the emulator's clock."""
        with self.lock:
            for request in self._requests.values():
                due = request.scheduled_at is None or request.scheduled_at <= now
                if request.status == "scheduled" and due:
                    self._judge(request, store, now)

    def clear(self) -> None:
        with self.lock:
            self._requests.clear()
            self._sent.clear()
            self._received.clear()

    def _judge(self, request: MessageRequest, store: Store, now: datetime) -> None:
        subscriber = self._recipient(request, store)
        code = _may_receive(subscriber, request.category)
        request.updated_at = now
        if code is not StatusCode.OK or subscriber is None or subscriber.phone_number is None:
            request.status, request.status_code = "failed", code
            return
        sent = SentMessage(
            id=f"sm_{uuid.uuid4().hex[:24]}",
            message_request_id=request.id,
            shop_id=self.shop_id,
            subscriber_id=subscriber.id,
            phone=subscriber.phone_number,
            body=request.body,
            category=request.category,
            media_url=request.media_url,
            credits_used=credits_for(request.body, request.media_url),
            created_at=now,
        )
        self._sent[sent.id] = sent
        request.status, request.sent_message = "sent", sent
        request.subscriber_id = subscriber.id

    @staticmethod
    def _recipient(request: MessageRequest, store: Store) -> Subscriber | None:
        """The subscriber as it is now: by id, or (for one pending when asked) by phone."""
        with store.lock:
            if request.subscriber_id is not None:
                try:
                    return store.get_any(request.subscriber_id)
                except ResourceNotFound:
                    return None
            if request.phone is None:
                return None
            return store.find_by_phone_digits(request.phone.lstrip("+"), pending=True)


def _may_receive(subscriber: Subscriber | None, category: str) -> StatusCode:
    if subscriber is None or subscriber.phone_number is None:
        return StatusCode.UNREACHABLE
    if subscriber.pending:
        return StatusCode.NOT_CONFIRMED
    allowed = (
        subscriber.promotional_can_send
        if category == "promotional"
        else subscriber.transactional_can_send
    )
    return StatusCode.OK if allowed else StatusCode.OPTED_OUT
