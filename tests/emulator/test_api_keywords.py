"""GET /api/v2/keywords and /api/v2/keywords/{id} (docs/design.md §2.1, §2.8 "keywords")."""

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
