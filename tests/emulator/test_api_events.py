"""POST /api/v2/events, compliance unsubscribe and /me (docs/design/postscript-api.md)."""

from __future__ import annotations

import httpx
import pytest

from tests.emulator.conftest import seed

pytestmark = pytest.mark.anyio


async def test_me_names_the_shop(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v2/me")
    assert response.status_code == 200
    assert set(response.json()) == {"resource_id", "resource_name", "resource_type"}


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
    assert stored == {
        **body,
        "event_id": event_id,
        "received_at": stored["received_at"],
        "recipient_id": "s_ada",
    }


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"phone": "+15555550100"}, ["body", "type"]),
        ({"type": "Has space", "phone": "+15555550100"}, ["body", "type"]),
        (
            {"type": "Ok", "phone": "+15555550100", "occurred_at": "2026-01-31T12:00:00"},
            ["body", "occurred_at"],
        ),
        ({"type": "Ok", "phone": "+15555550100", "properties": [1]}, ["body", "properties"]),
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


@pytest.mark.parametrize(
    ("event_type", "named"),
    [
        ("Segment Audience Entered!", "character 8, ' ', is not one of them"),
        ("Order-Shipped", "character 6, '-', is not one of them"),
        ("Caf\u00e9", "character 4, '\u00e9', is not one of them"),
        ("", "must not be empty"),
    ],
)
async def test_a_refused_event_type_names_the_allowed_characters_and_the_first_other(
    api: httpx.AsyncClient, event_type: str, named: str
) -> None:
    response = await api.post("/api/v2/events", json={"type": event_type, "external_id": "x"})
    (reason,) = response.json()["errors"]
    assert response.status_code == 400
    assert reason["loc"] == ["body", "type"]
    assert named in reason["msg"]
    assert (
        "lowercase letters (a-z), uppercase letters (A-Z), digits (0-9) and underscores (_)"
        in reason["msg"]
    )


async def test_an_event_naming_no_subscriber_is_accepted_and_stored_without_one(
    api: httpx.AsyncClient,
) -> None:
    body = {"type": "Store_Opened", "external_id": "x1"}
    response = await api.post("/api/v2/events", json=body)
    (stored,) = (await api.get("/_emulator/state")).json()["events"]
    assert response.status_code == 202, response.text
    assert response.headers["x-pslab-emulator-choice"] == "event-without-subscriber"
    assert stored == {
        **body,
        "event_id": response.json()["event_ids"][0],
        "received_at": stored["received_at"],
        "recipient_id": None,
    }


async def test_an_event_naming_its_subscriber_three_ways_at_once_is_accepted(
    api: httpx.AsyncClient,
) -> None:
    # as RudderStack's Postscript destination sends it: subscriber_id, phone and email
    await seed(api, {"id": "s_ada", "phone_number": "+15555550100", "email": "ada@example.com"})
    body = {
        "type": "Order_Placed",
        "subscriber_id": "s_ada",
        "phone": "+1 555 555 0100",
        "email": "ADA@example.com",
        "occurred_at": "2025-06-20 00:00:00.000",
    }
    response = await api.post("/api/v2/events", json=body)
    (stored,) = (await api.get("/_emulator/state")).json()["events"]
    assert response.status_code == 202
    assert stored["recipient_id"] == "s_ada"


@pytest.mark.parametrize(
    ("identifiers", "winner"),
    [
        ({"subscriber_id": "s_bob", "phone": "+15555550100", "email": "ada@example.com"}, "s_bob"),
        (
            {"subscriber_id": "s_nobody", "phone": "+15555550101", "email": "ada@example.com"},
            "s_bob",
        ),
        ({"phone": "+15555550199", "email": "ada@example.com"}, "s_ada"),
        ({"phone": "not a number", "email": "ada@example.com"}, "s_ada"),
    ],
    ids=["id-over-phone", "phone-when-id-names-nobody", "email-last", "unreadable-phone"],
)
async def test_of_several_identifiers_the_first_naming_a_subscriber_wins(
    api: httpx.AsyncClient, identifiers: dict[str, str], winner: str
) -> None:
    await seed(
        api,
        {"id": "s_ada", "phone_number": "+15555550100", "email": "ada@example.com"},
        {"id": "s_bob", "phone_number": "+15555550101"},
    )
    response = await api.post("/api/v2/events", json={"type": "Ok", **identifiers})
    (stored,) = (await api.get("/_emulator/state")).json()["events"]
    assert response.status_code == 202
    assert stored["recipient_id"] == winner


async def test_an_event_by_a_shared_email_goes_to_the_earliest_subscriber(
    api: httpx.AsyncClient,
) -> None:
    first, _ = await seed(
        api,
        {"phone_number": "+15555550100", "email": "shared@example.com"},
        {"phone_number": "+15555550101", "email": "Shared@Example.com"},
    )
    response = await api.post("/api/v2/events", json={"type": "Ok", "email": "shared@example.com"})
    (stored,) = (await api.get("/_emulator/state")).json()["events"]
    assert response.status_code == 202
    assert stored["recipient_id"] == first["id"]


async def test_event_properties_of_any_json_type_are_stored_as_sent(
    api: httpx.AsyncClient,
) -> None:
    await seed(api, {"id": "s_ada", "phone_number": "+15555550100"})
    properties = {"text": "a", "flag": True, "count": 3, "ratio": 0.5, "items": [1], "none": None}
    body = {"type": "Ok", "subscriber_id": "s_ada", "properties": properties}
    response = await api.post("/api/v2/events", json=body)
    (stored,) = (await api.get("/_emulator/state")).json()["events"]
    assert response.status_code == 202
    assert stored["properties"] == properties


async def test_event_for_an_unknown_subscriber_is_a_404_and_not_stored(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/api/v2/events",
        json={"type": "Ok", "subscriber_id": "s_x", "phone": "+15555550199", "email": "x@y.org"},
    )
    assert response.status_code == 404
    assert response.json() == {
        "error_code": 3001,
        "error_message": "Could not find subscriber matching that information",
        "success": False,
    }
    assert response.headers["x-pslab-emulator-choice"] == "not-found-3001"
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


async def test_compliance_unsubscribe_naming_nobody_is_404_and_naming_nothing_400(
    api: httpx.AsyncClient,
) -> None:
    unknown = await api.patch(
        "/api/v2/compliance/unsubscribe",
        json={"phone_number": "+15555550199", "postscript_subscriber_id": "s_1"},
    )
    empty = await api.patch("/api/v2/compliance/unsubscribe", json={})
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == 3001
    assert empty.status_code == 400
    assert [e["type"] for e in empty.json()["errors"]] == ["value_error.missing"]


async def test_unknown_route_and_method_use_the_error_envelope(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v2/nothing")
    wrong_method = await api.delete("/api/v2/me")
    assert missing.status_code == 404
    assert wrong_method.status_code == 405
    assert missing.json()["error_code"] == 3001
    assert wrong_method.json() == {
        "error_code": 405,
        "error_message": "Method Not Allowed",
        "success": False,
    }
    assert wrong_method.headers["x-pslab-emulator-choice"] == "error-code-stand-in"
