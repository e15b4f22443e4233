"""GET/POST/PATCH of subscribers: filters, sort, pages and PATCH semantics
(docs/design/postscript-api.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, seed, send_from_threads

pytestmark = pytest.mark.anyio


async def _find(api: httpx.AsyncClient, **params: str | list[str]) -> list[str]:
    response = await api.get("/api/v2/subscribers", params=params)
    assert response.status_code == 200, response.text
    return [s["phone_number"] for s in response.json()["subscribers"]]


@pytest.mark.parametrize(
    "written", ["+15555550100", "15555550100", "(555) 555-0100", "555.555.0100"]
)
async def test_phone_eq_matches_any_way_of_writing_the_number(
    api: httpx.AsyncClient, written: str
) -> None:
    await seed(api, {"phone_number": "+15555550100"}, {"phone_number": "+15555550101"})
    assert await _find(api, phone_number__eq=written) == ["+15555550100"]


async def test_seeded_phone_numbers_are_stored_as_e164(api: httpx.AsyncClient) -> None:
    (created,) = await seed(api, {"phone_number": "(555) 555-0100"})
    assert created["phone_number"] == "+15555550100"


async def test_phone_in_accepts_repeated_and_comma_joined_values(api: httpx.AsyncClient) -> None:
    await seed(api, *({"phone_number": f"+1555555010{i}"} for i in range(4)))
    repeated = await _find(api, phone_number__in=["+15555550100", "(555) 555-0101"])
    joined = await _find(api, phone_number__in="+15555550102,15555550103")
    assert repeated == ["+15555550100", "+15555550101"]
    assert joined == ["+15555550102", "+15555550103"]


async def test_phone_contains_matches_a_digit_substring(api: httpx.AsyncClient) -> None:
    await seed(api, {"phone_number": "+15555550100"}, {"phone_number": "+15555559999"})
    assert await _find(api, phone_number__contains="9999") == ["+15555559999"]


async def test_email_filters_ignore_case(api: httpx.AsyncClient) -> None:
    await seed(
        api,
        {"phone_number": "+15555550100", "email": "Ada@Example.com"},
        {"phone_number": "+15555550101", "email": "bob@example.com"},
        {"phone_number": "+15555550102", "email": "carol@other.org"},
    )
    assert await _find(api, email__eq="ada@example.COM") == ["+15555550100"]
    assert await _find(api, email__in="ADA@example.com,Bob@Example.com") == [
        "+15555550100",
        "+15555550101",
    ]
    assert await _find(api, email__contains="EXAMPLE") == ["+15555550100", "+15555550101"]


async def test_shopify_customer_id_and_ps_id_filters(api: httpx.AsyncClient) -> None:
    created = await seed(
        api,
        {"phone_number": "+15555550100", "shopify_customer_id": 111},
        {"phone_number": "+15555550101", "shopify_customer_id": "222"},
        {"phone_number": "+15555550102"},
    )
    assert await _find(api, shopify_customer_id__eq="111") == ["+15555550100"]
    assert await _find(api, shopify_customer_id__in=["111", "222"]) == [
        "+15555550100",
        "+15555550101",
    ]
    assert await _find(api, ps_id__eq=str(created[2]["ps_id"])) == ["+15555550102"]


async def test_shopify_customer_id_contains_matches_part_of_the_id(api: httpx.AsyncClient) -> None:
    await seed(
        api,
        {"phone_number": "+15555550100", "shopify_customer_id": 7104},
        {"phone_number": "+15555550101", "shopify_customer_id": "x710"},
        {"phone_number": "+15555550102", "shopify_customer_id": 99},
        {"phone_number": "+15555550103"},
    )
    assert await _find(api, shopify_customer_id__contains="710") == [
        "+15555550100",
        "+15555550101",
    ]


async def test_date_range_filters_on_created_and_updated(api: httpx.AsyncClient) -> None:
    await seed(
        api,
        {"phone_number": "+15555550100", "created_at": "2024-01-01T00:00:00Z"},
        {"phone_number": "+15555550101", "created_at": "2024-06-01T00:00:00Z"},
        {"phone_number": "+15555550102", "created_at": "2025-01-01T00:00:00Z"},
    )
    assert await _find(api, created_at__gt="2024-01-01T00:00:00Z") == [
        "+15555550101",
        "+15555550102",
    ]
    assert await _find(api, created_at__gte="2024-06-01", created_at__lt="2025-01-01") == [
        "+15555550101"
    ]
    assert await _find(api, created_at__lte="2024-01-01T00:00:00+00:00") == ["+15555550100"]
    assert await _find(api, created_at__eq="2024-06-01T00:00:00Z") == ["+15555550101"]
    assert await _find(api, updated_at__lt="2000-01-01") == []
    assert len(await _find(api, updated_at__gte="2000-01-01")) == 3


async def test_filters_combine_as_and(api: httpx.AsyncClient) -> None:
    await seed(
        api,
        {"phone_number": "+15555550100", "email": "a@example.com"},
        {"phone_number": "+15555550101", "email": "a@example.com"},
    )
    assert await _find(api, email__eq="a@example.com", phone_number__eq="+15555550101") == [
        "+15555550101"
    ]


async def test_sort_orders_by_the_field_both_ways(api: httpx.AsyncClient) -> None:
    await seed(
        api,
        {"phone_number": "+15555550102", "shopify_customer_id": 2},
        {"phone_number": "+15555550100"},
        {"phone_number": "+15555550101", "shopify_customer_id": 1},
    )
    assert await _find(api, sort="phone_number__asc") == [
        "+15555550100",
        "+15555550101",
        "+15555550102",
    ]
    assert await _find(api, sort="phone_number__desc") == [
        "+15555550102",
        "+15555550101",
        "+15555550100",
    ]
    # subscribers without a Shopify id come last either way
    assert await _find(api, sort="shopify_customer_id__desc") == [
        "+15555550102",
        "+15555550101",
        "+15555550100",
    ]


async def test_pages_hold_100_and_walk_past_the_first() -> None:
    app = create_app(EmulatorConfig(rate_limit_rps=0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://e", headers={"Authorization": f"Bearer {SECRET}"}
    ) as api:
        await seed(api, *({"phone_number": f"+1555555{i:04d}"} for i in range(250)))
        pages = []
        for page in (1, 2, 3, 4):
            body = (await api.get("/api/v2/subscribers", params={"page": page})).json()
            pages.append(body)
    assert [len(p["subscribers"]) for p in pages] == [100, 100, 50, 0]
    assert [p["page_info"] for p in pages[:3]] == [
        {"page": 1, "total_pages": 3},
        {"page": 2, "total_pages": 3},
        {"page": 3, "total_pages": 3},
    ]
    phones = [s["phone_number"] for p in pages for s in p["subscribers"]]
    assert phones == [f"+1555555{i:04d}" for i in range(250)]


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "x"},
        {"sort": "phone_number"},
        {"sort": "nickname__asc"},
        {"created_at__gt": "yesterday"},
        {"ps_id__eq": "abc"},
        {"sort": "email__asc"},  # the reference lists created_at, updated_at, phone, Shopify id
        {"sort": "ps_id__desc"},
    ],
)
async def test_bad_query_is_a_400_with_the_errors_envelope(
    api: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await api.get("/api/v2/subscribers", params=params)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["loc"] == ["query", next(iter(params))]
    assert error["msg"]
    assert error["type"]


async def test_get_subscriber_by_id_and_404_for_unknown(api: httpx.AsyncClient) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100", "id": "s_fixed"})
    found = await api.get("/api/v2/subscribers/s_fixed")
    missing = await api.get("/api/v2/subscribers/s_nobody")
    assert found.json() == created
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert set(missing.json()) == {"error_code", "error_message", "success"}


async def test_subscriber_has_every_documented_field(api: httpx.AsyncClient) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    assert set(created) == {
        "id",
        "ps_id",
        "phone_number",
        "email",
        "shopify_customer_id",
        "properties",
        "tags",
        "subscriptions",
        "data",
        "created_at",
        "updated_at",
    }
    assert created["id"].startswith("s_")
    assert isinstance(created["ps_id"], int)


async def test_post_subscriber_creates_a_pending_subscriber(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v2/subscribers",
        json={
            "phone_number": "+15555550100",
            "keyword": "join",
            "origin": "api",
            "email": "a@example.com",
            "tags": ["vip"],
            "properties": {"tier": "gold"},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["subscriptions"] == {
        "promotional": {"can_send": False},
        "transactional": {"can_send": False},
    }
    assert body["data"] == {"keyword_id": "kw_5f1c0e8a", "origin": "api"}  # JOIN, any case
    assert body["properties"] == {"tier": "gold"}
    assert body["tags"] == ["vip"]
    assert body["id"].startswith("sp_")  # a pending id (docs/design/emulator-choices.md#opt-in) ...
    assert (await api.get(f"/api/v2/subscribers/{body['id']}")).status_code == 404  # ... hidden
    listed = (await api.get("/api/v2/subscribers")).json()["subscribers"]
    assert listed == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "phone_number"]),
        ({"phone_number": "not a phone"}, ["body", "phone_number"]),
        ({"phone_number": "+15555550100", "keyword": "NOPE"}, ["body", "keyword"]),
        ({"phone_number": "+15555550100", "email": "nope"}, ["body", "email"]),
        ({"phone_number": "+15555550100", "tags": "vip"}, ["body", "tags"]),
    ],
)
async def test_post_subscriber_rejects_bad_bodies(
    api: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    response = await api.post("/api/v2/subscribers", json=body)
    assert response.status_code == 400
    assert [e["loc"] for e in response.json()["errors"]] == [loc]


async def test_post_subscriber_accepts_a_keyword_id_and_keeps_it_in_data(
    api: httpx.AsyncClient,
) -> None:
    (keyword, _) = (await api.get("/api/v2/keywords")).json()["keywords"]
    response = await api.post(
        "/api/v2/subscribers", json={"phone_number": "5555550100", "keyword_id": keyword["id"]}
    )
    assert response.status_code == 201
    assert response.json()["phone_number"] == "+15555550100"
    assert response.json()["data"] == {"keyword_id": keyword["id"]}


async def test_post_subscriber_with_a_taken_phone_is_a_400(api: httpx.AsyncClient) -> None:
    await seed(api, {"phone_number": "+15555550100"})
    response = await api.post("/api/v2/subscribers", json={"phone_number": "(555) 555-0100"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["type"] == "value_error.duplicate"


async def test_patch_merges_properties_adds_tags_and_bumps_updated_at(
    api: httpx.AsyncClient,
) -> None:
    (created,) = await seed(
        api, {"phone_number": "+15555550100", "properties": {"a": 1, "b": 2}, "tags": ["x"]}
    )
    response = await api.patch(
        f"/api/v2/subscribers/{created['id']}",
        json={"properties": {"b": 3, "c": [4]}, "tags": ["y", "x"]},
    )
    body = response.json()
    assert response.status_code == 200
    assert body["properties"] == {"a": 1, "b": 3, "c": [4]}
    assert body["tags"] == ["x", "y"]
    assert body["updated_at"] > created["updated_at"]
    assert body["created_at"] == created["created_at"]


async def test_patch_sets_the_email_when_empty_or_no_shopify_customer_is_linked(
    api: httpx.AsyncClient,
) -> None:
    empty, unlinked, linked = await seed(
        api,
        {"phone_number": "+15555550100"},
        {"phone_number": "+15555550101", "email": "old@example.com"},
        {"phone_number": "+15555550102", "email": "kept@example.com", "shopify_customer_id": 7},
    )
    answers = [
        await api.patch(f"/api/v2/subscribers/{s['id']}", json={"email": "new@example.com"})
        for s in (empty, unlinked, linked)
    ]
    assert [a.json()["email"] for a in answers] == [
        "new@example.com",
        "new@example.com",
        "kept@example.com",
    ]
    assert await _find(api, email__eq="NEW@example.com") == ["+15555550100", "+15555550101"]
    assert await _find(api, email__eq="old@example.com") == []


async def test_a_51st_custom_property_is_a_400_and_changes_nothing(
    api: httpx.AsyncClient,
) -> None:
    fifty = {f"p{i}": i for i in range(50)}
    (created,) = await seed(api, {"phone_number": "+15555550100", "properties": fifty})
    response = await api.patch(
        f"/api/v2/subscribers/{created['id']}", json={"properties": {"p51": 1}}
    )
    overwrite = await api.patch(
        f"/api/v2/subscribers/{created['id']}", json={"properties": {"p0": "x"}}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "properties"]
    assert overwrite.status_code == 200
    assert len(overwrite.json()["properties"]) == 50


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"properties": []}', b'{"tags": [1]}', b'{"properties": "[1]"}'],
)
async def test_patch_rejects_bad_bodies(api: httpx.AsyncClient, body: bytes) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    response = await api.patch(f"/api/v2/subscribers/{created['id']}", content=body)
    assert response.status_code == 400
    assert response.json()["errors"]


async def test_patch_of_unknown_subscriber_is_a_404(api: httpx.AsyncClient) -> None:
    response = await api.patch("/api/v2/subscribers/s_nobody", json={"properties": {}})
    assert response.status_code == 404


# -- concurrency: real threads, each on its own event loop, against one app; the
# `slow_*` fixtures pause inside the store's critical sections, so that without the
# store's lock the writers would interleave there (tests/emulator/conftest.py).


def _call(app: Starlette, method: str, path: str, body: Any = None) -> Any:
    (response,) = send_from_threads(app, [(method, path, body)])
    assert response.status_code < 300, response.text
    return response.json()


def _seed_one(app: Starlette, **fields: Any) -> str:
    seeded = _call(app, "POST", "/_emulator/subscribers", {"subscribers": [fields]})
    subscriber_id: str = seeded["subscribers"][0]["id"]
    return subscriber_id


@pytest.mark.usefixtures("slow_property_reads")
def test_fifty_concurrent_patches_leave_a_consistent_store(emulator_app: Starlette) -> None:
    url = f"/api/v2/subscribers/{_seed_one(emulator_app, phone_number='+15555550100')}"
    patches = [("PATCH", url, {"properties": {f"k{i}": i}, "tags": [f"t{i}"]}) for i in range(50)]

    responses = send_from_threads(emulator_app, patches)

    final = _call(emulator_app, "GET", url)
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses]
    assert final["properties"] == {f"k{i}": i for i in range(50)}
    assert sorted(final["tags"]) == sorted(f"t{i}" for i in range(50))
    stamps = [r.json()["updated_at"] for r in responses]
    assert len(set(stamps)) == 50
    assert final["updated_at"] == max(stamps)
    assert _call(emulator_app, "GET", "/_emulator/state")["subscribers"] == [final]


@pytest.mark.usefixtures("slow_property_reads")
def test_of_two_concurrent_patches_that_each_add_the_50th_property_one_is_refused(
    emulator_app: Starlette,
) -> None:
    forty_nine = {f"p{i}": i for i in range(49)}
    seeded = _seed_one(emulator_app, phone_number="+15555550100", properties=forty_nine)
    url = f"/api/v2/subscribers/{seeded}"

    responses = send_from_threads(
        emulator_app, [("PATCH", url, {"properties": {key: 1}}) for key in ("a", "b")]
    )

    assert sorted(r.status_code for r in responses) == [200, 400]
    (accepted,) = [r.json() for r in responses if r.status_code == 200]
    final = _call(emulator_app, "GET", url)
    assert final["properties"] == accepted["properties"]
    assert len(final["properties"]) == 50


@pytest.mark.usefixtures("slow_subscriber_construction")
def test_concurrent_creates_of_one_phone_number_make_exactly_one_subscriber(
    emulator_app: Starlette,
) -> None:
    post = ("POST", "/api/v2/subscribers", {"phone_number": "+15555550100"})

    responses = send_from_threads(emulator_app, [post] * 10)

    assert sorted(r.status_code for r in responses) == [201] + [400] * 9
    (created,) = [r.json() for r in responses if r.status_code == 201]
    refusals = [r.json()["errors"][0]["type"] for r in responses if r.status_code == 400]
    assert refusals == ["value_error.duplicate"] * 9
    state = _call(emulator_app, "GET", "/_emulator/state")
    assert [s["id"] for s in state["subscribers"]] == [created["id"]]


@pytest.mark.usefixtures("slow_subscriber_construction")
def test_concurrent_creates_get_distinct_ps_ids(emulator_app: Starlette) -> None:
    phones = [f"+1555555{i:04d}" for i in range(20)]

    responses = send_from_threads(
        emulator_app, [("POST", "/api/v2/subscribers", {"phone_number": p}) for p in phones]
    )

    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    created = [r.json() for r in responses]
    assert sorted(c["ps_id"] for c in created) == list(range(1, 21))
    assert len({c["id"] for c in created}) == 20
    state = _call(emulator_app, "GET", "/_emulator/state")
    assert sorted(s["ps_id"] for s in state["subscribers"]) == list(range(1, 21))
