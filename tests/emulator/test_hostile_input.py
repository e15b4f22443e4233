"""Hostile input: a 4xx that changes nothing for anything the emulator could not store and
serve back, and never a 5xx unless it is an injected fault.

This module: the kept corpus of inputs that once answered 500 or were stored broken.
Bodies too large or of another media type are in `test_hostile_bodies.py`, the hypothesis
fuzz of every API and admin endpoint in `test_hostile_fuzz.py`.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.emulator.conftest import seed
from tests.emulator.hostile import BODY_TEMPLATES, MAX_NESTING, SUBSCRIBER, SUBSCRIBER_ID, held

pytestmark = pytest.mark.anyio

# -- the kept corpus ------------------------------------------------------------

# JSON text Python's json module reads but no JSON encoder can write back (or that
# overflows a parser), each with a name for the test id.
UNSTORABLE_VALUES = {
    "nan": "NaN",
    "infinity": "Infinity",
    "minus-infinity": "-Infinity",
    "float-overflow": "1e400",
    "negative-float-overflow": "-1E+999",
    "integer-of-5000-digits": "1" + "0" * 5000,
    "lone-high-surrogate": r'"\ud800"',
    "lone-low-surrogate": r'"a\udc00b"',
    "reversed-surrogate-pair": r'"\udc00\ud800"',
    "lone-surrogate-in-a-key": r'{"\ud800": 1}',
    "nested-3000-deep": "[" * 3000 + "]" * 3000,
    "objects-nested-3000-deep": '{"a":' * 3000 + "1" + "}" * 3000,
}


def patch_of(value: str) -> bytes:
    """A PATCH body setting property `x` to the JSON text `value`."""
    return ('{"properties": {"x": ' + value + "}}").encode()


@pytest.fixture
async def seeded(api: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(api, SUBSCRIBER)
    return api


@pytest.mark.parametrize("value", UNSTORABLE_VALUES.values(), ids=UNSTORABLE_VALUES.keys())
@pytest.mark.parametrize("endpoint", BODY_TEMPLATES.keys())
async def test_unstorable_json_is_a_400_and_changes_nothing(
    seeded: httpx.AsyncClient, endpoint: str, value: str
) -> None:
    method, path, template = BODY_TEMPLATES[endpoint]
    before = await held(seeded)
    response = await seeded.request(
        method,
        path,
        content=template.replace("VALUE", value).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"]
    assert await held(seeded) == before
    assert (await seeded.get(f"/api/v2/subscribers/{SUBSCRIBER_ID}")).status_code == 200


async def test_a_nan_seed_stores_no_subscriber(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/_emulator/subscribers",
        content=b'{"subscribers": [{"phone_number": "+15555550100", "properties": {"x": NaN}}]}',
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["type"] == "value_error.number.not_finite"
    assert (await api.get("/_emulator/state")).json()["subscribers"] == []


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (rb'{"tags": ["ok", "\ud800"]}', ["body", "tags", 1]),
        (rb'{"properties": {"\udfff": 1}}', ["body", "properties", "\\udfff"]),
    ],
)
async def test_a_lone_surrogate_is_named_where_it_is(
    seeded: httpx.AsyncClient, raw: bytes, where: list[str | int]
) -> None:
    response = await seeded.patch(f"/api/v2/subscribers/{SUBSCRIBER_ID}", content=raw)
    (problem,) = response.json()["errors"]
    assert problem["loc"] == where
    assert problem["type"] == "value_error.unicode.surrogate"


@pytest.mark.parametrize(
    "raw",
    [
        '"caf\u00e9"'.encode("utf-16"),  # valid JSON text, but not UTF-8
        b'"\xed\xa0\x80"',  # a surrogate written as raw UTF-8 bytes
        b'"\xff"',
    ],
    ids=["utf-16", "raw-surrogate-bytes", "invalid-utf-8"],
)
async def test_a_body_that_is_not_utf8_is_a_400(seeded: httpx.AsyncClient, raw: bytes) -> None:
    before = await held(seeded)
    response = await seeded.patch(
        f"/api/v2/subscribers/{SUBSCRIBER_ID}", content=b'{"properties": {"x": ' + raw + b"}}"
    )
    assert response.status_code == 400
    assert await held(seeded) == before


@pytest.mark.parametrize(
    "value",
    [
        '"' + "[" * 5000 + '"',  # brackets inside a string are text, not nesting
        r'"\ud83d\ude00"',  # a surrogate pair is one character (U+1F600)
        "1" + "0" * 4000,
        "1.7976931348623157e308",
        "-0.0",
    ],
    ids=["brackets-in-a-string", "surrogate-pair", "integer-of-4001-digits", "max-float", "-0"],
)
async def test_json_that_can_be_stored_is_stored_and_served_back(
    seeded: httpx.AsyncClient, value: str
) -> None:
    response = await seeded.patch(
        f"/api/v2/subscribers/{SUBSCRIBER_ID}",
        content=patch_of(value),
    )
    assert response.status_code == 200, response.text
    served = await seeded.get(f"/api/v2/subscribers/{SUBSCRIBER_ID}")
    assert served.json()["properties"]["x"] == json.loads(value)


async def test_bodies_nest_at_most_64_levels(seeded: httpx.AsyncClient) -> None:
    def body(lists: int) -> bytes:  # the body and `properties` are two levels
        return patch_of("[" * lists + "]" * lists)

    url = f"/api/v2/subscribers/{SUBSCRIBER_ID}"
    deepest = await seeded.patch(url, content=body(MAX_NESTING - 2))
    too_deep = await seeded.patch(url, content=body(MAX_NESTING - 1))
    assert deepest.status_code == 200, deepest.text
    assert too_deep.status_code == 400
    assert too_deep.json()["errors"][0]["type"] == "value_error.nesting"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"rate_limit_rps": Infinity}', "rate_limit_rps"),
        ('{"rate_limit_rps": 1e400}', "rate_limit_rps"),
        ('{"rate_limit_rps": 1' + "0" * 400 + "}", "rate_limit_rps"),
        ('{"rate_limit_rps": 1e12}', "rate_limit_rps"),
        ('{"rate_limit_rps": -1}', "rate_limit_rps"),
        ('{"timeout_ms": 1e300}', "timeout_ms"),
        ('{"timeout_ms": 1' + "0" * 400 + "}", "timeout_ms"),
        ('{"latency_ms": [0, 1e300]}', "latency_ms"),
        ('{"latency_ms": [0, 1' + "0" * 400 + "]}", "latency_ms"),
        ('{"error_statuses": [500, 1e300]}', "error_statuses"),
        ('{"error_rate": 1.5}', "error_rate"),
        ('{"seed": 1.5}', "seed"),
    ],
)
async def test_a_fault_setting_out_of_range_is_a_400_and_keeps_the_setting(
    api: httpx.AsyncClient, body: str, field: str
) -> None:
    await api.put("/_emulator/faults", json={"rate_limit_rps": 5, "error_rate": 0.25})
    before = (await api.get("/_emulator/faults")).json()
    response = await api.put(
        "/_emulator/faults", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    (problem,) = response.json()["errors"]
    if problem["type"] != "value_error.number.not_finite":  # caught while reading the JSON
        assert problem["loc"] == ["body", field]
    after = await api.get("/_emulator/faults")
    assert after.status_code == 200
    assert after.json() == before


@pytest.mark.parametrize(
    "query",
    [
        "created_at__gt=9999-12-31T23:59:59-23:59",
        "created_at__lt=0001-01-01T00:00:00%2B23:59",
        "updated_at__eq=9999-12-31T23:59:59.999999-00:01",
    ],
)
async def test_a_date_filter_past_the_calendar_is_a_400(
    seeded: httpx.AsyncClient, query: str
) -> None:
    response = await seeded.get(f"/api/v2/subscribers?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["loc"][0] == "query"


@pytest.mark.parametrize(
    "created_at",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        # storable, but no later update could make updated_at strictly increase
        "9999-12-31T23:59:59.999999Z",
    ],
)
async def test_a_seeded_created_at_past_the_calendar_is_a_400(
    api: httpx.AsyncClient, created_at: str
) -> None:
    response = await api.post(
        "/_emulator/subscribers", json={"subscribers": [{"created_at": created_at}]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "subscribers", 0, "created_at"]
    assert (await api.get("/_emulator/state")).json()["subscribers"] == []


@pytest.mark.parametrize("subscriber_id", ["a/b", ".", "..", "s_" + "x" * 200, "s x", "s_é"])
async def test_a_seeded_id_outside_letters_digits_dash_underscore_is_a_400(
    api: httpx.AsyncClient, subscriber_id: str
) -> None:
    response = await api.post(
        "/_emulator/subscribers", json={"subscribers": [{"id": subscriber_id}]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "subscribers", 0, "id"]
