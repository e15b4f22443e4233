"""Lenient by default, strict on request (docs/design/emulator-choices.md#lenient-input,
"property-values", "properties-string", "event-identifiers", "event-without-subscriber",
"phone-matching")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, seed

pytestmark = pytest.mark.anyio

ADA = {"id": "s_ada", "phone_number": "+15555550100", "email": "ada@example.com"}
BOB = {"id": "s_bob", "phone_number": "+15555550101", "email": "bob@example.com"}


async def _seeded(strict: bool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EmulatorConfig(rate_limit_rps=0, strict=strict))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as client:
        await seed(client, ADA, BOB)
        yield client


@pytest.fixture
async def strict() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _seeded(strict=True):
        yield client


@pytest.fixture
async def lenient() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _seeded(strict=False):
        yield client


@pytest.fixture(params=[False, True], ids=["lenient", "strict"])
async def either(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _seeded(strict=request.param):
        yield client


# (method, path, query, body): each is accepted leniently and refused strictly, at `loc`
CLIENT_MISTAKES: dict[str, tuple[str, str, dict[str, str], Any, list[str | int]]] = {
    "misspelt-filter": (
        "GET",
        "/api/v2/subscribers",
        {"phone__eq": "+15555550100"},
        None,
        ["query", "phone__eq"],
    ),
    "query-on-me": ("GET", "/api/v2/me", {"verbose": "1"}, None, ["query", "verbose"]),
    "query-on-keywords": ("GET", "/api/v2/keywords", {"page": "2"}, None, ["query", "page"]),
    "patch-field": (
        "PATCH",
        "/api/v2/subscribers/s_ada",
        {},
        {"phone_number": "+15555550199", "first_name": "Ada"},
        ["body", "phone_number"],
    ),
    "event-field": (
        "POST",
        "/api/v2/events",
        {},
        {"type": "Ok", "subscriber_id": "s_ada", "channel": "web"},
        ["body", "channel"],
    ),
    "boolean-property": (
        "PATCH",
        "/api/v2/subscribers/s_ada",
        {},
        {"properties": {"has_purchased": True}},
        ["body", "properties", "has_purchased"],
    ),
    "float-property": (
        "PATCH",
        "/api/v2/subscribers/s_ada",
        {},
        {"properties": {"ratio": 0.5}},
        ["body", "properties", "ratio"],
    ),
    "nested-event-property": (
        "POST",
        "/api/v2/events",
        {},
        {"type": "Ok", "subscriber_id": "s_ada", "properties": {"cart": {"sku": "x"}}},
        ["body", "properties", "cart"],
    ),
    "identifiers-disagree": (
        "POST",
        "/api/v2/events",
        {},
        {"type": "Ok", "subscriber_id": "s_ada", "email": "bob@example.com"},
        ["body", "email"],
    ),
    "phone-not-a-number": (
        "POST",
        "/api/v2/events",
        {},
        {"type": "Ok", "subscriber_id": "s_ada", "phone": "call me"},
        ["body", "phone"],
    ),
    "event-naming-nobody": (
        "POST",
        "/api/v2/events",
        {},
        {"type": "Ok", "external_id": "x1"},
        ["body"],
    ),
    "unsubscribe-field": (
        "PATCH",
        "/api/v2/compliance/unsubscribe",
        {},
        {"phone_number": "+15555550101", "reason": "asked"},
        ["body", "reason"],
    ),
}


@pytest.mark.parametrize("mistake", CLIENT_MISTAKES)
async def test_a_client_mistake_postscript_may_accept_is_accepted_by_default(
    lenient: httpx.AsyncClient, mistake: str
) -> None:
    method, path, query, body, _ = CLIENT_MISTAKES[mistake]
    response = await lenient.request(method, path, params=query, json=body)
    assert response.status_code < 300, response.text


@pytest.mark.parametrize("mistake", CLIENT_MISTAKES)
async def test_a_client_mistake_is_a_400_naming_it_under_strict(
    strict: httpx.AsyncClient, mistake: str
) -> None:
    method, path, query, body, loc = CLIENT_MISTAKES[mistake]
    before = (await strict.get("/_emulator/state")).json()
    response = await strict.request(method, path, params=query, json=body)
    assert response.status_code == 400, response.text
    items = response.json()["errors"]
    where = [item["ctx"]["loc"] if "ctx" in item else item["loc"] for item in items]
    assert loc in where
    assert (await strict.get("/_emulator/state")).json() == before


async def test_an_event_naming_nobody_is_refused_under_strict_with_the_reason(
    strict: httpx.AsyncClient,
) -> None:
    response = await strict.post("/api/v2/events", json={"type": "Ok", "external_id": "x1"})
    (reason,) = response.json()["errors"]
    assert response.status_code == 400
    assert reason["msg"].startswith("give at least one of subscriber_id, phone or email")
    assert "strict mode refuses it" in reason["msg"]


async def test_a_400_on_me_has_the_documented_context_items(strict: httpx.AsyncClient) -> None:
    response = await strict.get("/api/v2/me", params={"verbose": "1"})
    (item,) = response.json()["errors"]
    assert set(item) == {"ctx", "log", "msg", "type"}


async def test_unknown_fields_are_ignored_not_stored_by_default(
    lenient: httpx.AsyncClient,
) -> None:
    response = await lenient.patch(
        "/api/v2/subscribers/s_ada",
        json={"properties": {"tier": "gold"}, "phone_number": "+15555550199", "first_name": "A"},
    )
    body = response.json()
    assert body["phone_number"] == ADA["phone_number"]
    assert body["properties"] == {"tier": "gold"}
    assert "first_name" not in body


async def test_an_unknown_query_parameter_is_ignored_by_default(
    lenient: httpx.AsyncClient,
) -> None:
    response = await lenient.get("/api/v2/subscribers", params={"phone__eq": "+15555550100"})
    assert [s["id"] for s in response.json()["subscribers"]] == ["s_ada", "s_bob"]


async def test_properties_may_be_sent_as_a_json_string(either: httpx.AsyncClient) -> None:
    response = await either.patch(
        "/api/v2/subscribers/s_ada", json={"properties": '{"tier": "gold", "visits": 3}'}
    )
    assert response.status_code == 200
    assert response.json()["properties"] == {"tier": "gold", "visits": 3}


@pytest.mark.parametrize("text", ['"gold"', "[1]", "{", '{"x": NaN}'])
async def test_a_properties_string_that_is_not_a_json_object_is_a_400(
    lenient: httpx.AsyncClient, text: str
) -> None:
    response = await lenient.patch("/api/v2/subscribers/s_ada", json={"properties": text})
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "properties"]


async def test_documented_property_types_are_accepted_under_strict(
    strict: httpx.AsyncClient,
) -> None:
    properties = {
        "tier": "gold",
        "visits": 3,
        "categories": ["Beauty", "Home Goods"],
        "birthday": "1991-01-01",
    }
    response = await strict.patch("/api/v2/subscribers/s_ada", json={"properties": properties})
    event = await strict.post(
        "/api/v2/events",
        json={
            "type": "Ok",
            "subscriber_id": "s_ada",
            "phone": "+15555550100",
            "email": "ADA@example.com",
            "properties": {"a": "x", "b": True, "c": 1, "d": 1.5},
        },
    )
    assert response.status_code == 200
    assert event.status_code == 202
