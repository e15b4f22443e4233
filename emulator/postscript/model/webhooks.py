"""Webhook subscriptions and the events they receive (docs/design/postscript-api.md#calls,
docs/design/emulator-choices.md).

Postscript documents API-managed subscriptions, one event type each
(`callback_url`, `event`, optional custom `headers`), a delivery envelope
(`webhook_id`, `resource_type`, `resource_id`, `event_time`, `event`,
`event_data`) and a per-shop signing token sent as the `Postscript-Signature`
header, which the receiver compares with the token it fetched. This module
holds the subscriptions of each shop and builds envelopes; `delivery` sends
them.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from postscript_audience_lab.emulator.postscript.errors import ResourceNotFound
from postscript_audience_lab.emulator.postscript.model.fields import FieldReader
from postscript_audience_lab.emulator.postscript.model.subscriber import format_time, utc_now

__all__ = [
    "EMAIL_COLLECTED_SPELLINGS",
    "EVENTS",
    "RESERVED_HEADERS",
    "SIGNATURE_HEADER",
    "WebhookRegistry",
    "WebhookSubscription",
    "callback_url_problem",
    "envelope",
    "event_time",
    "example_data",
    "example_envelope",
    "read_headers",
    "same_event",
]

SIGNATURE_HEADER = "Postscript-Signature"
# The create operation's enum spells it "shop.shop.email_collected", the event catalog and the
# example/test operations "shop.email_collected": both are taken, and mean one event.
EMAIL_COLLECTED_SPELLINGS = ("shop.email_collected", "shop.shop.email_collected")
EVENTS = (
    "shop.test",
    "shop.incoming_message",
    "shop.subscriber.opt_in",
    "shop.subscriber.opt_out",
    *EMAIL_COLLECTED_SPELLINGS,
)
# Headers the emulator sets itself on every delivery; a subscription may not replace them.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "postscript-signature", "transfer-encoding"}
)
MAX_CUSTOM_HEADERS = 20
MAX_URL_LENGTH = 2048
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_EXAMPLE_WEBHOOK_ID = "89066f0a-eb36-4ed8-b98c-606e6dcac715"


def same_event(subscribed: str, event: str) -> bool:
    if subscribed in EMAIL_COLLECTED_SPELLINGS:
        return event in EMAIL_COLLECTED_SPELLINGS
    return subscribed == event


def callback_url_problem(url: str) -> str | None:
    """Why `url` cannot receive deliveries, or None: HTTPS, or HTTP on a loopback host."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "must be an absolute URL such as https://example.com/webhooks"
    if parts.scheme not in ("https", "http") or not host or any(c.isspace() for c in url):
        return "must be an absolute URL such as https://example.com/webhooks"
    if parts.scheme == "http" and not _is_loopback(host):
        return "must use HTTPS (plain HTTP is allowed only for localhost and loopback addresses)"
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_headers(fields: FieldReader, name: str = "headers") -> dict[str, str] | None:
    """Custom headers: names are HTTP tokens, values printable text, none of ours replaced."""
    value = fields.body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        fields.fail(name, "must be a JSON object of header names and values", "type_error.dict")
        return None
    if len(value) > MAX_CUSTOM_HEADERS:
        fields.fail(name, f"at most {MAX_CUSTOM_HEADERS} headers", "value_error.headers")
        return None
    headers: dict[str, str] = {}
    for key, text in value.items():
        where = f"{name}.{key}"
        if not _TOKEN.fullmatch(key):
            fields.fail(where, "is not a valid HTTP header name", "value_error.header_name")
        elif key.lower() in RESERVED_HEADERS:
            fields.fail(where, "is set by Postscript on every delivery", "value_error.reserved")
        elif not isinstance(text, str):
            fields.fail(where, "must be a string", "type_error.str")
        elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in text if c != "\t") or not text.isascii():
            fields.fail(where, "must be printable ASCII on one line", "value_error.header_value")
        else:
            headers[key] = text
    return headers


@dataclass
class WebhookSubscription:
    id: str
    callback_url: str
    event: str
    headers: dict[str, str]
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "callback_url": self.callback_url,
            "created_at": format_time(self.created_at),
            "event": self.event,
            "headers": dict(self.headers),
            "id": self.id,
            "updated_at": format_time(self.updated_at),
        }


@dataclass
class WebhookRegistry:
    """One shop's subscriptions, in creation order, and its signing token."""

    token: str = field(default_factory=lambda: f"whsec_{secrets.token_hex(16)}")
    _subscriptions: dict[str, WebhookSubscription] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(
        self,
        callback_url: str,
        event: str,
        headers: dict[str, str],
        subscription_id: str | None = None,
    ) -> WebhookSubscription:
        now = utc_now()
        subscription = WebhookSubscription(
            subscription_id or str(uuid.uuid4()), callback_url, event, dict(headers), now, now
        )
        with self._lock:
            self._subscriptions[subscription.id] = subscription
        return subscription

    def get(self, subscription_id: str) -> WebhookSubscription:
        with self._lock:
            found = self._subscriptions.get(subscription_id)
        if found is None:
            raise ResourceNotFound("webhook subscription")
        return found

    def update(
        self, subscription_id: str, callback_url: str | None, headers: dict[str, str] | None
    ) -> WebhookSubscription:
        with self._lock:
            found = self._subscriptions.get(subscription_id)
            if found is None:
                raise ResourceNotFound("webhook subscription")
            if callback_url is not None:
                found.callback_url = callback_url
            if headers is not None:
                found.headers = dict(headers)
            found.updated_at = max(utc_now(), found.updated_at)
            return found

    def delete(self, subscription_id: str) -> None:
        with self._lock:
            if self._subscriptions.pop(subscription_id, None) is None:
                raise ResourceNotFound("webhook subscription")

    def all(self) -> list[WebhookSubscription]:
        with self._lock:
            return list(self._subscriptions.values())

    def matching(self, event: str) -> list[WebhookSubscription]:
        return [s for s in self.all() if same_event(s.event, event)]

    def clear(self) -> None:
        with self._lock:
            self._subscriptions.clear()


def event_time(moment: datetime | None = None) -> str:
    """The documented envelope's timestamp: UTC without an offset, microseconds."""
    moment = moment or utc_now()
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def envelope(
    webhook_id: str, shop_id: str, event: str, data: dict[str, Any], at: datetime | None = None
) -> dict[str, Any]:
    return {
        "webhook_id": webhook_id,
        "resource_type": "shop",
        "resource_id": shop_id,
        "event_time": event_time(at),
        "event": event,
        "event_data": data,
    }


def example_data(event: str, shop_id: str) -> dict[str, Any]:
    """A representative `event_data` (the documented one for shop.incoming_message)."""
    now = event_time()
    person = {
        "subscriber_id": "s_1234567abcd",
        "shop_id": shop_id,
        "phone_number": "+15555555555",
        "email": "subscriber@example.com",
        "shopify_customer_id": None,
        "created_at": now,
    }
    if event == "shop.incoming_message":
        return {
            "id": "im_1b2a005a386281c9",
            "subscriber_id": "s_1234567abcd",
            "shop_id": shop_id,
            "is_opt_out": False,
            "shopify_customer_id": None,
            "from_number": "+15555555555",
            "created_at": now,
            "body": "Hello, world",
        }
    if event == "shop.subscriber.opt_in":
        return {**person, "keyword_id": "kw_5f1c0e8a", "pending_subscriber_id": "sp_1234567abcd"}
    if event == "shop.subscriber.opt_out":
        return {**person, "source": "inbound_text"}
    if event in EMAIL_COLLECTED_SPELLINGS:
        return {"shop_id": shop_id, "email": "subscriber@example.com", "created_at": now}
    return {"shop_id": shop_id, "message": "This is a test event from Postscript"}


def example_envelope(event: str, shop_id: str) -> dict[str, Any]:
    return envelope(_EXAMPLE_WEBHOOK_ID, shop_id, event, example_data(event, shop_id))
