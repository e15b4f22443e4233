"""PATCH /api/v2/compliance/redact and unsubscribe (docs/design/postscript-api.md#calls,
docs/design/emulator-choices.md)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, seed

pytestmark = pytest.mark.anyio

ADA = {
    "id": "s_ada",
    "phone_number": "+15555550100",
    "email": "Ada@Example.com",
    "shopify_customer_id": 4401,
    "properties": {"Segment Audiences": ["vip"]},
    "tags": ["loyal"],
}
BOB = {"id": "s_bob", "phone_number": "+15555550101", "email": "bob@example.com"}
REDACTED_FIELDS: dict[str, object] = {
    "phone_number": None,
    "email": None,
    "shopify_customer_id": None,
    "properties": {},
    "tags": [],
    "subscriptions": {"promotional": {"can_send": False}, "transactional": {"can_send": False}},
}


def _redacted(subscriber: dict[str, object]) -> dict[str, object]:
    return {key: subscriber[key] for key in REDACTED_FIELDS}


@pytest.mark.parametrize(
    "identifier",
    [
        {"postscript_subscriber_id": "s_ada"},
        {"phone_number": "(555) 555-0100"},
        {"email": "ada@example.com"},
        {"shopify_customer_id": "4401"},
        {"shopify_customer_id": 4401},
    ],
    ids=["id", "phone", "email", "shopify-id", "shopify-id-as-number"],
)
async def test_redact_forgets_personal_data_and_opts_out(
    api: httpx.AsyncClient, identifier: dict[str, object]
) -> None:
    await seed(api, ADA, BOB)
    response = await api.patch("/api/v2/compliance/redact", json=identifier)
    state = {s["id"]: s for s in (await api.get("/_emulator/state")).json()["subscribers"]}
    assert response.status_code == 202
    assert response.json() == {"message": "OK"}
    assert _redacted(state["s_ada"]) == REDACTED_FIELDS
    assert state["s_bob"]["phone_number"] == BOB["phone_number"]
    assert state["s_bob"]["subscriptions"]["promotional"]["can_send"] is True


async def test_a_redacted_subscriber_is_found_by_id_only(api: httpx.AsyncClient) -> None:
    (ada,) = await seed(api, ADA)
    await api.patch("/api/v2/compliance/redact", json={"postscript_subscriber_id": "s_ada"})
    by_id = await api.get("/api/v2/subscribers/s_ada")
    lookups = [
        (await api.get("/api/v2/subscribers", params=params)).json()["subscribers"]
        for params in (
            {"phone_number__eq": "+15555550100"},
            {"email__eq": "ada@example.com"},
            {"shopify_customer_id__eq": "4401"},
        )
    ]
    reuse = await api.post("/api/v2/subscribers", json={"phone_number": "+15555550100"})
    assert by_id.status_code == 200
    assert by_id.json()["updated_at"] > ada["updated_at"]
    assert lookups == [[], [], []]
    assert reuse.status_code == 201  # the phone number is free again


async def test_redact_scrubs_the_events_that_named_the_subscriber(api: httpx.AsyncClient) -> None:
    await seed(api, ADA, BOB)
    bodies = [
        {"type": "A", "subscriber_id": "s_ada", "properties": {"sku": "x"}},
        {"type": "B", "phone": "555.555.0100", "properties": {"sku": "y"}},
        {"type": "C", "email": "ADA@example.com"},
        {"type": "D", "email": "bob@example.com", "properties": {"sku": "z"}},
    ]
    for body in bodies:
        assert (await api.post("/api/v2/events", json=body)).status_code == 202
    await api.patch("/api/v2/compliance/redact", json={"email": "ada@example.com"})
    events = (await api.get("/_emulator/state")).json()["events"]
    assert [(e.get("phone"), e.get("email"), e.get("properties")) for e in events] == [
        (None, None, {}),
        (None, None, {}),
        (None, None, None),
        (None, "bob@example.com", {"sku": "z"}),
    ]
    assert [e["subscriber_id"] for e in events if "subscriber_id" in e] == ["s_ada"]


async def test_redact_by_a_shared_email_redacts_every_subscriber_with_it(
    api: httpx.AsyncClient,
) -> None:
    await seed(api, ADA, {**BOB, "email": "ada@example.com"})
    await api.patch("/api/v2/compliance/redact", json={"email": "ADA@example.com"})
    state = (await api.get("/_emulator/state")).json()["subscribers"]
    assert [s["email"] for s in state] == [None, None]


async def test_redact_naming_nobody_is_404_and_naming_nothing_is_400(
    api: httpx.AsyncClient,
) -> None:
    await seed(api, BOB)
    nobody = await api.patch(
        "/api/v2/compliance/redact", json={"email": "ada@example.com", "phone_number": "1"}
    )
    nothing = await api.patch("/api/v2/compliance/redact", json={})
    state = (await api.get("/_emulator/state")).json()["subscribers"]
    assert nobody.status_code == 404
    assert nobody.json()["error_code"] == 3001
    assert nothing.status_code == 400
    assert state[0]["email"] == BOB["email"]


async def test_a_redaction_survives_a_restart(tmp_path: Path) -> None:
    config = EmulatorConfig(rate_limit_rps=0, state_path=tmp_path / "state.sqlite")
    headers = {"Authorization": f"Bearer {SECRET}"}
    for restart in (False, True):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(config)),
            base_url="http://emulator",
            headers=headers,
        ) as api:
            if not restart:
                await seed(api, ADA)
                event = {"type": "A", "email": "ada@example.com", "properties": {"k": "v"}}
                await api.post("/api/v2/events", json=event)
                await api.patch("/api/v2/compliance/redact", json={"phone_number": "5555550100"})
            state = (await api.get("/_emulator/state")).json()
    assert _redacted(state["subscribers"][0]) == REDACTED_FIELDS
    assert state["events"][0]["email"] is None
    assert state["events"][0]["properties"] == {}


async def test_unsubscribe_by_id_and_phone_opts_out_everyone_they_name(
    api: httpx.AsyncClient,
) -> None:
    await seed(api, ADA, BOB)
    response = await api.patch(
        "/api/v2/compliance/unsubscribe",
        json={"postscript_subscriber_id": "s_ada", "phone_number": BOB["phone_number"]},
    )
    state = (await api.get("/_emulator/state")).json()["subscribers"]
    assert response.status_code == 202
    assert [s["subscriptions"]["promotional"]["can_send"] for s in state] == [False, False]
    assert [s["phone_number"] for s in state] == [ADA["phone_number"], BOB["phone_number"]]
