"""Post an `Order_Shipped` event for a shopper, with requests and the real Postscript URL."""

from __future__ import annotations

import requests

__all__ = ["POSTSCRIPT_API", "notify_shipped"]

POSTSCRIPT_API = "https://api.postscript.io/api/v2"


def notify_shipped(secret_key: str, phone: str, order_id: str) -> str | None:
    """The subscriber notified, or None when the shopper is not one."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {secret_key}"
        found = session.get(
            f"{POSTSCRIPT_API}/subscribers", params={"phone_number__eq": phone}, timeout=10
        )
        found.raise_for_status()
        subscribers = found.json()["subscribers"]
        if not subscribers:
            return None
        subscriber_id: str = subscribers[0]["id"]
        event = {"type": "Order_Shipped", "subscriber_id": subscriber_id, "external_id": order_id}
        session.post(f"{POSTSCRIPT_API}/events", json=event, timeout=10).raise_for_status()
        return subscriber_id
