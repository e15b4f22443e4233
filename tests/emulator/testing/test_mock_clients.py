"""`mock_postscript` for requests (through responses) and aiohttp (through aioresponses).

requests calls here have no timeout on purpose: they are answered in process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import requests
import responses

from postscript_audience_lab.emulator.testing import UnroutedRequest, mock_postscript

API = "https://api.postscript.io/api/v2"
KEY = {"Authorization": "Bearer sk_test_pslab"}
ADA = "+15555550100"


def lookup_with_requests(phone: str) -> list[dict[str, Any]]:
    """Code under test as users write it with requests: the real URL, a module-level call."""
    answer = requests.get(f"{API}/subscribers", params={"phone_number__eq": phone}, headers=KEY)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["subscribers"]
    return found


async def tag_with_aiohttp(phone: str, tag: str) -> int:
    async with aiohttp.ClientSession(base_url="https://api.postscript.io", headers=KEY) as session:
        async with session.get("/api/v2/subscribers", params={"phone_number__eq": phone}) as found:
            (subscriber,) = (await found.json())["subscribers"]
        path = f"/api/v2/subscribers/{subscriber['id']}"
        async with session.patch(path, json={"tags": [tag]}) as answer:
            return answer.status


def test_requests_with_the_real_url_sees_what_the_handle_seeded() -> None:
    with mock_postscript() as postscript:
        ada = postscript.seed(phone_number=ADA)
        (found,) = lookup_with_requests(ADA)
        answer = requests.post(
            f"{API}/events",
            json={"type": "Order_Shipped", "subscriber_id": ada.id, "properties": {}},
            headers=KEY,
        )
        assert answer.status_code == 202, answer.text
        assert found["id"] == ada.id
        assert [event.type for event in postscript.events] == ["Order_Shipped"]


def test_aiohttp_with_the_real_url_changes_the_same_state() -> None:
    with mock_postscript() as postscript:
        postscript.seed(phone_number=ADA)
        assert asyncio.run(tag_with_aiohttp(ADA, "vip")) == 200
        assert postscript.subscriber(phone=ADA).tags == ["vip"]


def test_the_three_clients_share_one_rate_limit_and_one_journal() -> None:
    import httpx

    with mock_postscript(rate_limit=2) as postscript:
        statuses = [
            httpx.get(f"{API}/subscribers", headers=KEY).status_code,
            requests.get(f"{API}/subscribers", headers=KEY).status_code,
            asyncio.run(_aiohttp_status(f"{API}/subscribers")),
        ]
        assert statuses.count(429) >= 1
        assert len(postscript.requests) == 3


async def _aiohttp_status(url: str) -> int:
    async with aiohttp.ClientSession(headers=KEY) as session, session.get(url) as answer:
        return answer.status


def test_faults_reach_requests_and_aiohttp_as_their_own_errors() -> None:
    with mock_postscript(faults={"error_rate": 1.0, "error_statuses": [503]}):
        assert requests.get(f"{API}/subscribers", headers=KEY).status_code == 503
        assert asyncio.run(_aiohttp_status(f"{API}/subscribers")) == 503
    with mock_postscript(faults={"timeout_rate": 1.0, "timeout_ms": 1}):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{API}/subscribers", headers=KEY)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            asyncio.run(_aiohttp_status(f"{API}/subscribers"))


def test_another_host_is_refused_for_requests_and_aiohttp_naming_it() -> None:
    with pytest.raises(UnroutedRequest) as unrouted, mock_postscript():
        requests.get("https://hooks.example.com/ping")
    assert "no route for GET https://hooks.example.com/ping" in str(unrouted.value)
    with pytest.raises(UnroutedRequest) as unrouted, mock_postscript():
        asyncio.run(_aiohttp_status("https://hooks.example.com/ping"))
    assert "no route for GET https://hooks.example.com/ping" in str(unrouted.value)


def test_expected_unrouted_requests_do_not_fail_the_block() -> None:
    expected = mock_postscript(expect_unrouted=["https://hooks.example.com"])
    with expected, pytest.raises(UnroutedRequest):
        requests.get("https://hooks.example.com/ping")
    unexpected = mock_postscript(expect_unrouted=["https://hooks.example.com"])
    unexpected.start()
    with pytest.raises(UnroutedRequest):
        requests.get("https://other.example/")
    with pytest.raises(UnroutedRequest, match=r"carried on: GET https://other\.example/"):
        unexpected.stop()


def test_without_assert_all_mocked_other_hosts_get_an_empty_200() -> None:
    with mock_postscript(assert_all_mocked=False):
        assert requests.get("https://hooks.example.com/ping").status_code == 200
        assert asyncio.run(_aiohttp_status("https://hooks.example.com/ping")) == 200


def test_a_responses_mock_already_active_keeps_the_hosts_it_routes() -> None:
    with responses.RequestsMock() as theirs:
        theirs.get("https://hooks.example.com/ping", status=204)
        with mock_postscript() as postscript:
            postscript.seed(phone_number=ADA)
            assert requests.get("https://hooks.example.com/ping").status_code == 204
            assert len(lookup_with_requests(ADA)) == 1


def test_a_mock_postscript_inside_another_serves_aiohttp_and_restores_the_outer() -> None:
    with mock_postscript() as outer:
        outer.seed(phone_number=ADA)
        with mock_postscript() as inner:
            inner.seed(phone_number=ADA)
            assert asyncio.run(tag_with_aiohttp(ADA, "inner")) == 200
            assert inner.subscriber(phone=ADA).tags == ["inner"]
        assert asyncio.run(tag_with_aiohttp(ADA, "outer")) == 200
        assert outer.subscriber(phone=ADA).tags == ["outer"]
