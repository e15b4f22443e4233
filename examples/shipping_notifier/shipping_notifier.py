"""Tell Postscript when a Shopify order ships, so a flow can text the shopper its tracking link.

For each shipment: find the shopper's subscriber (by phone, then by email),
post an `Order_Shipped` custom event for it, and keep the latest tracking
number in the subscriber's `Last Tracking Number` property. A shopper who is
not a subscriber is skipped. 429s, 5xx answers and dropped connections are
retried with exponential backoff; a refused key is not.

    python shipping_notifier.py shipment.json     # POSTSCRIPT_SECRET_KEY in the environment

It is an example of code tested with pslab's pytest plugin: it calls
https://api.postscript.io and knows nothing of the emulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "EVENT_TYPE",
    "POSTSCRIPT_API",
    "AsyncShippingNotifier",
    "PostscriptUnavailable",
    "Shipment",
    "ShippingNotifier",
    "main",
]

POSTSCRIPT_API = "https://api.postscript.io"
EVENT_TYPE = "Order_Shipped"
TRACKING_PROPERTY = "Last Tracking Number"
RETRIED = {429, 500, 502, 503, 504}


class PostscriptUnavailable(Exception):
    """Postscript refused the key, or kept failing after every retry."""


@dataclass(frozen=True)
class Shipment:
    order_id: str
    phone: str | None
    email: str | None
    carrier: str
    tracking_number: str
    shipped_at: datetime

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Shipment:
        return cls(
            order_id=doc["order_id"],
            phone=doc.get("phone"),
            email=doc.get("email"),
            carrier=doc["carrier"],
            tracking_number=doc["tracking_number"],
            shipped_at=datetime.fromisoformat(doc["shipped_at"]),
        )


def _lookups(shipment: Shipment) -> list[dict[str, str]]:
    """The subscriber searches to try, in order: phone first, then email."""
    found = []
    if shipment.phone:
        found.append({"phone_number__eq": shipment.phone})
    if shipment.email:
        found.append({"email__eq": shipment.email})
    return found


def _event_body(subscriber_id: str, shipment: Shipment) -> dict[str, Any]:
    return {
        "type": EVENT_TYPE,
        "subscriber_id": subscriber_id,
        "external_id": shipment.order_id,
        "occurred_at": shipment.shipped_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "properties": {
            "order_id": shipment.order_id,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
        },
    }


def _settled(answer: httpx.Response) -> bool:
    """True when the answer is final; False when it is worth another try."""
    if answer.status_code in RETRIED:
        return False
    if answer.status_code in (401, 403):
        raise PostscriptUnavailable(f"Postscript refused the key ({answer.status_code})")
    return True


class ShippingNotifier:
    """Posts shipments to Postscript with a sync httpx client (its own, or one it is given)."""

    def __init__(
        self,
        secret_key: str,
        *,
        base_url: str = POSTSCRIPT_API,
        client: httpx.Client | None = None,
        attempts: int = 5,
        backoff_s: float = 0.1,
    ) -> None:
        self._client = client or httpx.Client(base_url=base_url, timeout=10)
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        self._attempts = attempts
        self._backoff_s = backoff_s

    def notify(self, shipment: Shipment) -> str | None:
        """Notify the shopper's subscriber; its id, or None when the shopper is not one."""
        for params in _lookups(shipment):
            found = self._send("GET", "/api/v2/subscribers", params=params).json()["subscribers"]
            if found:
                subscriber_id: str = found[0]["id"]
                self._send("POST", "/api/v2/events", json=_event_body(subscriber_id, shipment))
                tracking = {"properties": {TRACKING_PROPERTY: shipment.tracking_number}}
                self._send("PATCH", f"/api/v2/subscribers/{subscriber_id}", json=tracking)
                return subscriber_id
        return None

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self._attempts):
            try:
                answer = self._client.request(method, path, headers=self._headers, **kwargs)
                if _settled(answer):
                    return answer.raise_for_status()
            except httpx.TransportError:
                pass
            time.sleep(self._backoff_s * 2**attempt)
        raise PostscriptUnavailable(f"{method} {path} failed {self._attempts} times")


class AsyncShippingNotifier:
    """The same for async services."""

    def __init__(
        self,
        secret_key: str,
        *,
        base_url: str = POSTSCRIPT_API,
        client: httpx.AsyncClient | None = None,
        attempts: int = 5,
        backoff_s: float = 0.1,
    ) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=10)
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        self._attempts = attempts
        self._backoff_s = backoff_s

    async def notify(self, shipment: Shipment) -> str | None:
        for params in _lookups(shipment):
            answer = await self._send("GET", "/api/v2/subscribers", params=params)
            found = answer.json()["subscribers"]
            if found:
                subscriber_id: str = found[0]["id"]
                await self._send(
                    "POST", "/api/v2/events", json=_event_body(subscriber_id, shipment)
                )
                tracking = {"properties": {TRACKING_PROPERTY: shipment.tracking_number}}
                await self._send("PATCH", f"/api/v2/subscribers/{subscriber_id}", json=tracking)
                return subscriber_id
        return None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self._attempts):
            try:
                answer = await self._client.request(method, path, headers=self._headers, **kwargs)
                if _settled(answer):
                    return answer.raise_for_status()
            except httpx.TransportError:
                pass
            await asyncio.sleep(self._backoff_s * 2**attempt)
        raise PostscriptUnavailable(f"{method} {path} failed {self._attempts} times")


def main(argv: list[str] | None = None) -> int:
    """`python shipping_notifier.py SHIPMENT.json`: notify one shipment, print the outcome."""
    (path,) = argv if argv is not None else sys.argv[1:]
    with open(path, encoding="utf-8") as file:
        shipment = Shipment.from_json(json.load(file))
    notifier = ShippingNotifier(
        os.environ["POSTSCRIPT_SECRET_KEY"],
        base_url=os.environ.get("POSTSCRIPT_BASE_URL", POSTSCRIPT_API),
    )
    try:
        subscriber_id = notifier.notify(shipment)
    finally:
        notifier.close()
    print(json.dumps({"order_id": shipment.order_id, "subscriber_id": subscriber_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
