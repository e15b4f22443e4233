"""POST /api/v2/events, compliance unsubscribe, keywords and /me (docs/design.md §2)."""

from __future__ import annotations

import httpx
import pytest

from tests.emulator.conftest import seed

pytestmark = pytest.mark.anyio


async def test_me_names_the_shop(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v2/me")
    assert response.status_code == 200
    assert set(response.json()) == {"resource_id", "resource_name", "resource_type"}


async def test_keywords_are_listed(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v2/keywords")
    assert response.status_code == 200
    assert [k["keyword"] for k in response.json()["keywords"]] == ["JOIN", "VIP"]


@pytest.mark.parametrize(
    "identifier",
    [{"phone": "(555) 555-0100"}, {"email": "ADA@example.com"}, {"subscriber_id": "s_ada"}],
)
async def test_event_is_accepted_and_stored_with_its_id(
    api: httpx.AsyncClient, identifier: dict[str, str]
) -> None:
    await seed(api, {"id": "s_ada", "phone_number": "+15555550100", "email": "ada@example.com"})
    body = {
        "type": "Segment_Audience_Entered",
        **identifier,
        "properties": {"audience_key": "vip"},
        "occurred_at": "2026-01-31 12:00:00.123456",
        "external_id": "x1",
    }
    response = await api.post("/api/v2/events", json=body)
    assert response.status_code == 202
    (event_id,) = response.json()["event_ids"]
    (stored,) = (await api.get("/_emulator/state")).json()["events"]
    assert stored == {**body, "event_id": event_id, "received_at": stored["received_at"]}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"phone": "+15555550100"}, ["body", "type"]),
        ({"type": "Has space", "phone": "+15555550100"}, ["body", "type"]),
        ({"type": "Ok"}, ["body"]),
        ({"type": "Ok", "phone": "+15555550100", "email": "a@example.com"}, ["body"]),
        (
            {"type": "Ok", "phone": "+15555550100", "occurred_at": "2026-01-31T12:00:00"},
            ["body", "occurred_at"],
        ),
        ({"type": "Ok", "phone": "+15555550100", "properties": [1]}, ["body", "properties"]),
        ({"type": "Ok", "phone": "+15555550100", "extra": 1}, ["body", "extra"]),
    ],
)
async def test_bad_events_are_400_and_not_stored(
    api: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    await seed(api, {"phone_number": "+15555550100"})
    response = await api.post("/api/v2/events", json=body)
    assert response.status_code == 400
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    assert (await api.get("/_emulator/state")).json()["events"] == []


async def test_event_for_an_unknown_subscriber_is_a_404_and_not_stored(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/api/v2/events", json={"type": "Ok", "phone": "+15555550199"})
    assert response.status_code == 404
    assert response.json()["success"] is False
    assert (await api.get("/_emulator/state")).json()["events"] == []


@pytest.mark.parametrize("by", ["postscript_subscriber_id", "phone_number"])
async def test_compliance_unsubscribe_stops_sending(api: httpx.AsyncClient, by: str) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    target = created["id"] if by == "postscript_subscriber_id" else "15555550100"
    response = await api.patch("/api/v2/compliance/unsubscribe", json={by: target})
    after = (await api.get(f"/api/v2/subscribers/{created['id']}")).json()
    assert response.status_code == 202
    assert response.json() == {"message": "OK"}
    assert after["subscriptions"] == {
        "promotional": {"can_send": False},
        "transactional": {"can_send": False},
    }
    assert after["updated_at"] > created["updated_at"]


async def test_compliance_unsubscribe_errors(api: httpx.AsyncClient) -> None:
    unknown = await api.patch(
        "/api/v2/compliance/unsubscribe", json={"phone_number": "+15555550199"}
    )
    empty = await api.patch("/api/v2/compliance/unsubscribe", json={})
    both = await api.patch(
        "/api/v2/compliance/unsubscribe",
        json={"phone_number": "+15555550199", "postscript_subscriber_id": "s_1"},
    )
    assert unknown.status_code == 404
    assert empty.status_code == both.status_code == 400
    assert [e["type"] for e in empty.json()["errors"]] == ["value_error.missing"]
    assert [e["type"] for e in both.json()["errors"]] == ["value_error.conflict"]


async def test_unknown_route_and_method_use_the_error_envelope(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v2/nothing")
    wrong_method = await api.delete("/api/v2/me")
    assert missing.status_code == 404
    assert wrong_method.status_code == 405
    assert missing.json()["success"] is False
    assert wrong_method.json()["success"] is False
