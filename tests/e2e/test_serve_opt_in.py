"""A parked change applied as soon as its subscriber opts in: `pslab serve --webhook-url`
subscribes to Postscript's `shop.subscriber.opt_in` and unparks on each delivery.

Real processes: `pslab emulator` delivers the webhook over HTTP to `pslab serve`.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import (
    KEY,
    SHARED_SECRET,
    Server,
    emulator_url,
    servers,
    signature,
    start_server,
)

__all__ = ["emulator_url", "servers"]  # fixtures, shared with the other serve tests

pytestmark = pytest.mark.slow

PHONE = "+15555550177"
BEARER = {"Authorization": f"Bearer {KEY}"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_with_hook(tmp_path: Path, emulator_url: str, *extra: str) -> tuple[Server, str]:
    """`pslab serve` on a port chosen first, so that its webhook URL can name it."""
    port = _free_port()
    hook = f"http://127.0.0.1:{port}/postscript/webhooks"
    server = start_server(
        tmp_path / "state.sqlite", emulator_url, tmp_path / "serve.log",
        "--port", str(port), "--webhook-url", hook, *extra,
    )  # fmt: skip
    return server, hook


def _audience_event() -> bytes:
    event = {
        "type": "identify",
        "messageId": "opt-in-parked-1",
        "timestamp": "2026-12-01T00:00:00Z",
        "traits": {"vip": True, "phone": PHONE},
        "context": {"personas": {"computation_class": "audience", "computation_key": "vip"}},
    }
    return json.dumps(event).encode()


def test_a_parked_change_is_applied_within_2_s_of_the_subscribers_opt_in(
    tmp_path: Path, emulator_url: str, servers: list[Server]
) -> None:
    server, _ = _serve_with_hook(tmp_path, emulator_url, "--parked-retry", "300")
    servers.append(server)
    body = _audience_event()
    stored = httpx.post(f"{server.url}/", content=body, headers={"X-Signature": signature(body)})
    assert stored.json()["accepted"] == 1
    parked = server.wait_for(lambda status: status["parked"] == 1)

    with httpx.Client(base_url=emulator_url, timeout=10) as api:
        subscriptions = api.get("/api/v2/webhooks", headers=BEARER).json()
        created = api.post(
            "/api/v2/subscribers", json={"phone_number": PHONE, "keyword": "JOIN"}, headers=BEARER
        )
        assert created.status_code == 201, created.text
        opted_in = time.monotonic()
        api.post("/_emulator/inbound", json={"phone_number": PHONE, "body": "YES"})
        applied = server.wait_for(lambda status: status["since_start"]["applied"] == 1, timeout=10)
        took = time.monotonic() - opted_in
        found = api.get("/api/v2/subscribers", params={"phone_number__eq": PHONE}, headers=BEARER)

    assert [item["event"] for item in subscriptions["webhook_subscriptions"]] == [
        "shop.subscriber.opt_in"
    ]
    assert parked["next_parked_retry_in_s"] > 100  # the periodic retry is minutes away
    assert applied["since_start"]["applied"] == 1
    [subscriber] = found.json()["subscribers"]
    assert subscriber["properties"]["Segment Audiences"] == ["vip"]
    print(f"applied {took:.2f} s after the opt-in text")
    assert took < 2, f"the parked change was applied {took:.2f} s after the opt-in"


def test_a_delivery_without_the_shops_token_is_refused_and_changes_nothing(
    tmp_path: Path, emulator_url: str, servers: list[Server]
) -> None:
    server, hook = _serve_with_hook(tmp_path, emulator_url)
    servers.append(server)
    forged = {"event": "shop.subscriber.opt_in", "event_data": {"phone_number": PHONE}}

    unsigned = httpx.post(hook, json=forged)
    wrong = httpx.post(hook, json=forged, headers={"Postscript-Signature": SHARED_SECRET})

    assert (unsigned.status_code, wrong.status_code) == (401, 401)
    assert "Postscript-Signature" in wrong.json()["error"]
