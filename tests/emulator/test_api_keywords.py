"""GET /api/v2/keywords and /api/v2/keywords/{id} (docs/design/postscript-api.md#calls,
docs/design/emulator-choices.md#keywords)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.anyio

KEYWORD_FIELDS = {"id", "keyword", "created_at", "triggered_count", "updated_at"}


async def test_keywords_are_listed_with_every_documented_field(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v2/keywords")
    keywords = response.json()["keywords"]
    assert response.status_code == 200
    assert [k["keyword"] for k in keywords] == ["JOIN", "VIP"]
    assert all(set(k) == KEYWORD_FIELDS for k in keywords)
    assert all(k["triggered_count"] == 0 for k in keywords)


async def test_a_keyword_is_read_by_its_id(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/api/v2/keywords")).json()["keywords"]
    read = [(await api.get(f"/api/v2/keywords/{k['id']}")).json() for k in listed]
    assert read == listed


async def test_an_unknown_keyword_id_is_the_documented_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v2/keywords/kw_nope")
    assert response.status_code == 404
    assert response.json() == {
        "error_code": 3001,
        "error_message": "Could not find keyword matching that information",
        "success": False,
    }
    assert "x-pslab-emulator-choice" not in response.headers  # documented as is


async def test_triggered_count_counts_subscribers_created_through_the_keyword(
    api: httpx.AsyncClient,
) -> None:
    for phone, keyword in (
        ("+15555550100", "join"),
        ("+15555550101", "JOIN"),
        ("+15555550102", "vip"),
    ):
        created = await api.post(
            "/api/v2/subscribers", json={"phone_number": phone, "keyword": keyword}
        )
        assert created.status_code == 201
    counts = {
        k["keyword"]: k["triggered_count"]
        for k in (await api.get("/api/v2/keywords")).json()["keywords"]
    }
    join = (await api.get("/api/v2/keywords/kw_5f1c0e8a")).json()
    assert counts == {"JOIN": 2, "VIP": 1}
    assert join["triggered_count"] == 2


async def _add(client: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    return await client.post("/_emulator/keywords", json=body)


async def test_a_keyword_added_as_data_is_listed_and_opts_subscribers_in(
    api: httpx.AsyncClient,
) -> None:
    added = await _add(api, {"keywords": [{"keyword": "WELCOME"}]})
    assert added.status_code == 200, added.text
    (welcome,) = added.json()["keywords"]
    listed = (await api.get("/api/v2/keywords")).json()["keywords"]
    created = await api.post(
        "/api/v2/subscribers", json={"phone_number": "+15555550100", "keyword": "WELCOME"}
    )
    assert set(welcome) == KEYWORD_FIELDS
    assert [k["keyword"] for k in listed] == ["JOIN", "VIP", "WELCOME"]
    assert listed[-1] == welcome
    assert created.status_code == 201, created.text
    assert created.json()["data"] == {"keyword_id": welcome["id"]}
    read = (await api.get(f"/api/v2/keywords/{welcome['id']}")).json()
    assert read["triggered_count"] == 1


async def test_an_added_keyword_may_name_its_id_and_is_found_by_it(
    api: httpx.AsyncClient,
) -> None:
    await _add(api, {"keywords": [{"keyword": "summer10", "id": "kw_summer"}]})
    created = await api.post(
        "/api/v2/subscribers", json={"phone_number": "+15555550100", "keyword_id": "kw_summer"}
    )
    read = await api.get("/api/v2/keywords/kw_summer")
    assert created.status_code == 201, created.text
    assert read.json()["keyword"] == "SUMMER10"  # stored as the shop's keywords are: upper case


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"keywords": [{"keyword": "join"}]}, ["body", "keywords", 0, "keyword"]),
        ({"keywords": [{"keyword": ""}]}, ["body", "keywords", 0, "keyword"]),
        ({"keywords": [{"keyword": "TWO WORDS"}]}, ["body", "keywords", 0, "keyword"]),
        ({"keywords": [{"keyword": "STOP"}]}, ["body", "keywords", 0, "keyword"]),
        ({"keywords": [{}]}, ["body", "keywords", 0, "keyword"]),
        (
            {"keywords": [{"keyword": "NEW"}, {"keyword": "new"}]},
            ["body", "keywords", 1, "keyword"],
        ),
        ({"keywords": [{"keyword": "NEW", "id": "kw_5f1c0e8a"}]}, ["body", "keywords", 0, "id"]),
        ({"keywords": [{"keyword": "NEW", "colour": "red"}]}, ["body", "keywords", 0, "colour"]),
        ({"keywords": []}, ["body", "keywords"]),
        ({"keywords": "WELCOME"}, ["body", "keywords"]),
        ({}, ["body", "keywords"]),
        ({"keywords": [{"keyword": "NEW"}], "shop": "shop_nope"}, ["body", "shop"]),
        ({"keywords": [{"keyword": "NEW"}], "color": 1}, ["body", "color"]),
    ],
)
async def test_a_bad_keyword_addition_is_a_400_naming_it_and_adds_none(
    api: httpx.AsyncClient, body: dict[str, object], loc: list[str | int]
) -> None:
    response = await _add(api, body)
    listed = (await api.get("/api/v2/keywords")).json()["keywords"]
    assert response.status_code == 400
    assert loc in [e["loc"] for e in response.json()["errors"]]
    assert [k["keyword"] for k in listed] == ["JOIN", "VIP"]


async def test_a_keyword_already_present_is_refused_with_its_id(api: httpx.AsyncClient) -> None:
    await _add(api, {"keywords": [{"keyword": "WELCOME"}]})
    again = await _add(api, {"keywords": [{"keyword": "Welcome"}, {"keyword": "OTHER"}]})
    listed = (await api.get("/api/v2/keywords")).json()["keywords"]
    (reason,) = again.json()["errors"]
    assert again.status_code == 400
    assert reason["msg"].startswith("WELCOME is already a keyword of shop shop_pslab0emulator")
    assert [k["keyword"] for k in listed] == ["JOIN", "VIP", "WELCOME"]  # OTHER not added


async def test_reset_keeps_added_keywords_as_it_keeps_shops(api: httpx.AsyncClient) -> None:
    await _add(api, {"keywords": [{"keyword": "WELCOME"}]})
    await api.post("/_emulator/reset")
    listed = (await api.get("/api/v2/keywords")).json()["keywords"]
    assert [k["keyword"] for k in listed] == ["JOIN", "VIP", "WELCOME"]
