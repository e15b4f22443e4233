"""Shops and partners (docs/design/postscript-api.md#auth, docs/design/emulator.md): partner
authentication, public keys,
separate subscribers and rate limits per shop, forbidden operation groups, `/_emulator/shops`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.errors import InvalidInput
from postscript_audience_lab.emulator.postscript.model.shops import Tenancy, parse_tenancy
from postscript_audience_lab.emulator.postscript.web.app import create_app

pytestmark = pytest.mark.anyio

SHOPS: dict[str, Any] = {
    "shops": [
        {"id": "shop_a", "name": "Shop A", "secret_key": "sk_a", "public_key": "pk_a"},
        {"id": "shop_b", "name": "Shop B", "secret_key": "sk_b"},
    ],
    "partners": [{"id": "partner_p", "name": "Partner P", "key": "sk_partner_p"}],
}
ACCESS_DENIED = {
    "errors": [
        {
            "loc": [],
            "msg": "Access denied. You do not have permissions to access the requested resource.",
            "type": "v2.access_denied",
        }
    ]
}
KEYWORDS_DENIED = {"error": "You do not have permission to do that."}


def _client(shops: dict[str, Any] = SHOPS, rps: float = 0) -> httpx.AsyncClient:
    config = EmulatorConfig(rate_limit_rps=rps, tenancy=parse_tenancy(shops))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(config)), base_url="http://emulator"
    )


def _as(key: str, shop_token: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if shop_token is not None:
        headers["X-Postscript-Shop-Token"] = shop_token
    return headers


async def _seed(client: httpx.AsyncClient, shop: str, phone: str) -> str:
    body = {"shop": shop, "subscribers": [{"phone_number": phone}]}
    response = await client.post("/_emulator/subscribers", json=body)
    assert response.status_code == 200, response.text
    subscriber_id: str = response.json()["subscribers"][0]["id"]
    return subscriber_id


async def _phones(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get("/api/v2/subscribers", headers=headers)
    assert response.status_code == 200, response.text
    return [s["phone_number"] for s in response.json()["subscribers"]]


async def test_two_shops_on_one_emulator_keep_separate_subscribers() -> None:
    async with _client() as client:
        in_a = await _seed(client, "shop_a", "+15555550100")
        await _seed(client, "shop_b", "+15555550101")
        await _seed(client, "shop_b", "+15555550100")  # the same phone, in the other shop
        seen_by_a = await _phones(client, _as("sk_a"))
        seen_by_b = await _phones(client, _as("sk_b"))
        a_reads_its_own = await client.get(f"/api/v2/subscribers/{in_a}", headers=_as("sk_a"))
        b_reads_a_s = await client.get(f"/api/v2/subscribers/{in_a}", headers=_as("sk_b"))
        state_b = (await client.get("/_emulator/state", params={"shop": "shop_b"})).json()
    assert seen_by_a == ["+15555550100"]
    assert seen_by_b == ["+15555550101", "+15555550100"]
    assert a_reads_its_own.status_code == 200
    assert b_reads_a_s.status_code == 404
    assert [s["phone_number"] for s in state_b["subscribers"]] == seen_by_b


async def test_me_names_the_shop_a_key_belongs_to() -> None:
    async with _client() as client:
        answers = [
            (await client.get("/api/v2/me", headers=_as(k))).json() for k in ("sk_a", "sk_b")
        ]
    assert answers == [
        {"resource_id": "shop_a", "resource_name": "Shop A", "resource_type": "shop"},
        {"resource_id": "shop_b", "resource_name": "Shop B", "resource_type": "shop"},
    ]


async def test_a_partner_with_a_shop_token_acts_for_that_shop() -> None:
    async with _client() as client:
        await _seed(client, "shop_b", "+15555550101")
        me = await client.get("/api/v2/me", headers=_as("sk_partner_p", "sk_b"))
        phones = await _phones(client, _as("sk_partner_p", "sk_b"))
        event = await client.post(
            "/api/v2/events",
            headers=_as("sk_partner_p", "sk_b"),
            json={"type": "Partner_Event", "phone": "+15555550101"},
        )
        held_by_b = (await client.get("/_emulator/state", params={"shop": "shop_b"})).json()
    assert me.json() == {
        "resource_id": "shop_b",
        "resource_name": "Shop B",
        "resource_type": "shop",
    }
    assert phones == ["+15555550101"]
    assert event.status_code == 202
    assert [e["type"] for e in held_by_b["events"]] == ["Partner_Event"]


async def test_a_partner_key_alone_answers_me_as_the_partner_and_is_refused_elsewhere() -> None:
    async with _client() as client:
        me = await client.get("/api/v2/me", headers=_as("sk_partner_p"))
        subscribers = await client.get("/api/v2/subscribers", headers=_as("sk_partner_p"))
        keywords = await client.get("/api/v2/keywords", headers=_as("sk_partner_p"))
    assert me.status_code == 200
    assert me.json() == {
        "resource_id": "partner_p",
        "resource_name": "Partner P",
        "resource_type": "partner",
    }
    assert (subscribers.status_code, subscribers.json()) == (403, ACCESS_DENIED)
    assert (keywords.status_code, keywords.json()) == (403, KEYWORDS_DENIED)
    assert subscribers.headers["x-pslab-emulator-choice"] == "auth-partner"


async def test_a_partner_naming_no_shop_is_401() -> None:
    async with _client() as client:
        response = await client.get("/api/v2/me", headers=_as("sk_partner_p", "sk_nobody"))
    assert response.status_code == 401
    assert "X-Postscript-Shop-Token" in response.json()["error_message"]


@pytest.mark.parametrize("path", ["/api/v2/me", "/api/v2/subscribers", "/api/v2/keywords"])
async def test_a_public_key_is_refused_with_403_and_an_unknown_key_with_401(path: str) -> None:
    async with _client() as client:
        public = await client.get(path, headers=_as("pk_a"))
        unknown = await client.get(path, headers=_as("pk_unknown"))
    assert public.status_code == 403
    assert public.headers["x-pslab-emulator-choice"] == "auth-keys"
    assert unknown.status_code == 401


async def test_two_shops_have_separate_rate_limits_and_a_partner_pair_its_own() -> None:
    # at 0.01 rps a bucket holds one token and takes 100 s to earn the next
    async with _client(rps=0.01) as client:

        async def twice(headers: dict[str, str]) -> list[int]:
            return [(await client.get("/api/v2/me", headers=headers)).status_code for _ in "12"]

        shop_a = await twice(_as("sk_a"))
        shop_b = await twice(_as("sk_b"))
        partner_for_a = await twice(_as("sk_partner_p", "sk_a"))
        partner_for_b = await twice(_as("sk_partner_p", "sk_b"))
        partner_alone = await twice(_as("sk_partner_p"))
    assert shop_a == shop_b == partner_for_a == partner_for_b == partner_alone == [200, 429]


async def test_refused_credentials_spend_no_token() -> None:
    async with _client(rps=0.01) as client:
        refused = [
            (await client.get("/api/v2/subscribers", headers=_as(key))).status_code
            for key in ("pk_a", "sk_partner_p", "sk_wrong")
        ]
        allowed = await client.get("/api/v2/me", headers=_as("sk_partner_p"))
    assert refused == [403, 403, 401]
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    ("group", "method", "path", "body"),
    [
        ("keywords", "GET", "/api/v2/keywords", KEYWORDS_DENIED),
        ("keywords", "GET", "/api/v2/keywords/kw_5f1c0e8a", KEYWORDS_DENIED),
        ("compliance", "PATCH", "/api/v2/compliance/unsubscribe", ACCESS_DENIED),
        ("compliance", "PATCH", "/api/v2/compliance/redact", ACCESS_DENIED),
        ("subscribers", "GET", "/api/v2/subscribers", ACCESS_DENIED),
    ],
)
async def test_a_forbidden_group_answers_403_with_the_documented_body(
    group: str, method: str, path: str, body: dict[str, Any]
) -> None:
    shops = {
        "shops": [{"id": "shop_a", "secret_key": "sk_a"}],
        "partners": [{"id": "partner_p", "key": "sk_partner_p", "forbidden": [group]}],
    }
    async with _client(shops) as client:
        as_partner = await client.request(method, path, headers=_as("sk_partner_p", "sk_a"))
        me = await client.get("/api/v2/me", headers=_as("sk_partner_p", "sk_a"))
    assert (as_partner.status_code, as_partner.json()) == (403, body)
    documented = group in ("keywords", "compliance")
    assert ("x-pslab-emulator-choice" in as_partner.headers) is not documented
    assert me.status_code == 200


async def test_shops_can_be_replaced_at_run_time_and_keep_their_data() -> None:
    async with _client() as client:
        await _seed(client, "shop_b", "+15555550101")
        only_b = {"shops": [{"id": "shop_b", "secret_key": "sk_b2"}]}
        put = await client.put("/_emulator/shops", json=only_b)
        old_key = await client.get("/api/v2/me", headers=_as("sk_b"))
        new_key = await _phones(client, _as("sk_b2"))
        default_state = (await client.get("/_emulator/state")).json()
    assert put.status_code == 200
    assert put.json()["shops"][0]["id"] == "shop_b"
    assert put.json()["partners"] == []
    assert old_key.status_code == 401
    assert new_key == ["+15555550101"]
    assert [s["phone_number"] for s in default_state["subscribers"]] == new_key  # first shop


@pytest.mark.parametrize(
    ("shops", "loc"),
    [
        ({"shops": []}, ["body", "shops"]),
        ({"shops": [{"id": "a b", "secret_key": "sk_x"}]}, ["body", "shops", 0, "id"]),
        ({"shops": [{"id": "a", "secret_key": "pk_x"}]}, ["body", "shops", 0, "secret_key"]),
        (
            {"shops": [{"id": "a", "secret_key": "sk_x"}, {"id": "b", "secret_key": "sk_x"}]},
            ["body", "shops", 1, "secret_key"],
        ),
        (
            {"shops": [{"id": "a", "secret_key": "sk_x"}], "partners": [{"id": "p"}]},
            ["body", "partners", 0, "key"],
        ),
        (
            {"shops": [{"id": "a", "secret_key": "sk_x", "forbidden": ["billing"]}]},
            ["body", "shops", 0, "forbidden"],
        ),
        (
            {"shops": [{"id": "a", "secret_key": "sk_x", "keywords": [{"keyword": " "}]}]},
            ["body", "shops", 0, "keywords", 0, "keyword"],
        ),
        (
            {
                "shops": [
                    {
                        "id": "a",
                        "secret_key": "sk_x",
                        "keywords": [{"keyword": "JOIN", "id": "kw_j"}],
                    }
                ]
            },
            ["body", "shops", 0, "keywords", 0, "keyword"],
        ),
        (
            {"shops": [{"id": "a", "secret_key": "sk_x", "keywords": [{"keyword": "JOIN"}] * 2}]},
            ["body", "shops", 0, "keywords", 1, "keyword"],
        ),
    ],
)
async def test_a_bad_shops_setting_is_a_400_and_keeps_the_setting(
    shops: dict[str, Any], loc: list[str | int]
) -> None:
    async with _client() as client:
        response = await client.put("/_emulator/shops", json=shops)
        kept = (await client.get("/_emulator/shops")).json()
    assert response.status_code == 400
    assert loc in [e["loc"] for e in response.json()["errors"]]
    assert [s["id"] for s in kept["shops"]] == ["shop_a", "shop_b"]


async def test_seeding_a_shop_that_does_not_exist_is_a_400() -> None:
    async with _client() as client:
        response = await client.post(
            "/_emulator/subscribers", json={"shop": "shop_z", "subscribers": [{}]}
        )
        state = await client.get("/_emulator/state", params={"shop": "shop_z"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "shop"]
    assert state.status_code == 400


async def test_the_default_emulator_has_one_shop_a_public_key_and_a_partner() -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(EmulatorConfig(rate_limit_rps=0))),
        base_url="http://emulator",
    ) as client:
        shops = (await client.get("/_emulator/shops")).json()
        partner = await client.get(
            "/api/v2/keywords", headers=_as("sk_partner_test_pslab", "sk_test_pslab")
        )
        public = await client.get("/api/v2/me", headers=_as("pk_test_pslab"))
    assert [s["secret_key"] for s in shops["shops"]] == ["sk_test_pslab"]
    assert [p["key"] for p in shops["partners"]] == ["sk_partner_test_pslab"]
    assert partner.status_code == 200
    assert public.status_code == 403


async def test_keywords_belong_to_one_shop_and_come_from_the_setting_or_the_admin_call() -> None:
    setting = {
        "shops": [
            {**SHOPS["shops"][0], "keywords": [{"keyword": "JOIN"}, {"keyword": "welcome"}]},
            SHOPS["shops"][1],
        ]
    }
    async with _client(setting) as client:
        added = await client.post(
            "/_emulator/keywords", json={"shop": "shop_b", "keywords": [{"keyword": "VIP2"}]}
        )
        in_a = (await client.get("/api/v2/keywords", headers=_as("sk_a"))).json()["keywords"]
        in_b = (await client.get("/api/v2/keywords", headers=_as("sk_b"))).json()["keywords"]
        welcome_in_b = await client.post(
            "/api/v2/subscribers",
            json={"phone_number": "+15555550100", "keyword": "WELCOME"},
            headers=_as("sk_b"),
        )
        listed = (await client.get("/_emulator/shops")).json()
    assert added.status_code == 200, added.text
    assert [k["keyword"] for k in in_a] == ["JOIN", "VIP", "WELCOME"]
    assert [k["keyword"] for k in in_b] == ["JOIN", "VIP", "VIP2"]
    assert welcome_in_b.status_code == 400  # shop_a's keyword is not shop_b's
    assert [k["keyword"] for k in listed["shops"][1]["keywords"]] == ["JOIN", "VIP", "VIP2"]
    # the listing is a setting PUT takes back, keeping every keyword's id
    assert [k.id for k in parse_tenancy(listed).shops[1].keywords] == [k["id"] for k in in_b]


def test_a_keyword_given_without_an_id_gets_the_same_id_from_the_same_setting() -> None:
    shop = {"id": "shop_a", "secret_key": "sk_a", "keywords": [{"keyword": "WELCOME"}]}
    first = parse_tenancy({"shops": [shop]}).default_shop.keywords
    again = parse_tenancy({"shops": [shop]}).default_shop.keywords
    other = parse_tenancy({"shops": [{**shop, "id": "shop_b"}]}).default_shop.keywords
    assert first == again
    assert first[-1].id.startswith("kw_")
    assert first[-1].id != other[-1].id


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_shop_items = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["shop_a", "shop_b", "a b"]) | _json_values,
        "secret_key": st.sampled_from(["sk_a", "sk_b", "pk_a", ""]) | _json_values,
        "public_key": st.sampled_from(["pk_a", "sk_x"]) | _json_values,
        "forbidden": st.lists(st.sampled_from(["keywords", "compliance", "nope"])) | _json_values,
        "keywords": st.lists(
            st.fixed_dictionaries(
                {"keyword": st.sampled_from(["JOIN", "welcome", "WELCOME", "", "a b"])},
                optional={"id": st.sampled_from(["kw_5f1c0e8a", "kw_x", "bad id"])},
            )
            | _json_values,
            max_size=3,
        )
        | _json_values,
    },
)


@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "shops": st.lists(_shop_items, max_size=3) | _json_values,
            "partners": _json_values,
        },
    )
)
def test_a_shops_setting_is_refused_naming_its_problems_or_reads_back_as_given(
    body: dict[str, Any],
) -> None:
    tenancy = _parsed_or_none(body)
    if tenancy is None:
        return
    assert parse_tenancy(tenancy.to_json()) == tenancy
    keys = [s.secret_key for s in tenancy.shops] + [p.key for p in tenancy.partners]
    assert len(keys) == len(set(keys))
    assert not any(key.startswith("pk_") for key in keys)


def _parsed_or_none(body: dict[str, Any]) -> Tenancy | None:
    """The setting, or None when it is refused (naming at least one problem)."""
    try:
        return parse_tenancy(body)
    except InvalidInput as refused:
        if not refused.problems:
            raise AssertionError("refused without naming a problem") from refused
        return None
