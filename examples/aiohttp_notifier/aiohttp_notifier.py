"""Tag a shopper's subscriber, with aiohttp and the real Postscript URL."""

from __future__ import annotations

import aiohttp

__all__ = ["POSTSCRIPT_API", "tag_subscriber"]

POSTSCRIPT_API = "https://api.postscript.io"


async def tag_subscriber(secret_key: str, phone: str, tag: str) -> str | None:
    """The subscriber tagged, or None when the shopper is not one."""
    headers = {"Authorization": f"Bearer {secret_key}"}
    async with aiohttp.ClientSession(base_url=POSTSCRIPT_API, headers=headers) as session:
        params = {"phone_number__eq": phone}
        async with session.get("/api/v2/subscribers", params=params) as found:
            found.raise_for_status()
            subscribers = (await found.json())["subscribers"]
        if not subscribers:
            return None
        subscriber_id: str = subscribers[0]["id"]
        tags = sorted({*subscribers[0]["tags"], tag})
        path = f"/api/v2/subscribers/{subscriber_id}"
        async with session.patch(path, json={"tags": tags}) as answer:
            answer.raise_for_status()
        return subscriber_id
