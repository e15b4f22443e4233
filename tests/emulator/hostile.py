"""What the hostile-input tests share: the subscriber they start from, the body templates that
put a hostile value where each endpoint would store it, and everything the emulator holds,
which a 4xx must leave as it was."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["BODY_TEMPLATES", "MAX_NESTING", "SUBSCRIBER", "SUBSCRIBER_ID", "held"]

# The documented limit (docs/guides/emulator.md, "Errors and auth").
MAX_NESTING = 64

SUBSCRIBER_ID = "s_hostile"
SUBSCRIBER = {"id": SUBSCRIBER_ID, "phone_number": "+15555550100", "email": "a@example.com"}

# Where each body-taking endpoint would store (or act on) the hostile value.
BODY_TEMPLATES = {
    "patch-subscriber": (
        "PATCH",
        f"/api/v2/subscribers/{SUBSCRIBER_ID}",
        '{"properties": {"x": VALUE}}',
    ),
    "create-subscriber": (
        "POST",
        "/api/v2/subscribers",
        '{"phone_number": "+15555550199", "properties": {"x": VALUE}}',
    ),
    "create-event": (
        "POST",
        "/api/v2/events",
        '{"type": "t", "subscriber_id": "s_hostile", "properties": {"x": VALUE}}',
    ),
    "unsubscribe": (
        "PATCH",
        "/api/v2/compliance/unsubscribe",
        '{"postscript_subscriber_id": VALUE}',
    ),
    "redact": ("PATCH", "/api/v2/compliance/redact", '{"email": VALUE}'),
    "seed": (
        "POST",
        "/_emulator/subscribers",
        '{"subscribers": [{"phone_number": "+15555550199"}, {"properties": {"x": VALUE}}]}',
    ),
    "put-faults": ("PUT", "/_emulator/faults", '{"rate_limit_rps": VALUE}'),
    "put-shops": ("PUT", "/_emulator/shops", '{"shops": [{"id": "shop_x", "secret_key": VALUE}]}'),
}


async def held(api: httpx.AsyncClient) -> dict[str, Any]:
    """Everything the emulator holds, its faults and shops: what a 4xx must leave alone."""
    state = await api.get("/_emulator/state")
    faults = await api.get("/_emulator/faults")
    shops = await api.get("/_emulator/shops")
    assert state.status_code == 200, state.text
    assert faults.status_code == 200, faults.text
    assert shops.status_code == 200, shops.text
    return {"state": state.json(), "faults": faults.json(), "shops": shops.json()}
