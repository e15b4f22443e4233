"""`mock_postscript` outside pytest: code calling the real URL with httpx meets the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import respx

from postscript_audience_lab.emulator.testing import Postscript, UnroutedRequest, mock_postscript

API = "https://api.postscript.io/api/v2"
KEY = {"Authorization": "Bearer sk_test_pslab"}
ADA = "+15555550100"


def find_by_phone(phone: str) -> list[dict[str, object]]:
    """Code under test as users write it: the real base URL, a module-level httpx call."""
    answer = httpx.get(f"{API}/subscribers", params={"phone_number__eq": phone}, headers=KEY)
    answer.raise_for_status()
    found: list[dict[str, object]] = answer.json()["subscribers"]
    return found


async def tag_async(subscriber_id: str, tag: str) -> int:
    async with httpx.AsyncClient(base_url=API, headers=KEY) as client:
        answer = await client.patch(f"/subscribers/{subscriber_id}", json={"tags": [tag]})
        return answer.status_code


def test_sync_code_with_the_real_url_sees_what_the_handle_seeded() -> None:
    with mock_postscript() as postscript:
        ada = postscript.seed(phone_number=ADA, email="ada@example.com")
        assert [s["id"] for s in find_by_phone("(555) 555-0100")] == [ada.id]
        assert [(r.method, r.path) for r in postscript.requests] == [("GET", "/api/v2/subscribers")]


def test_async_code_with_the_real_url_changes_the_state_the_handle_reads() -> None:
    with mock_postscript() as postscript:
        ada = postscript.seed(phone_number=ADA)
        assert asyncio.run(tag_async(ada.id, "shipped")) == 200
        assert postscript.subscriber(id=ada.id).tags == ["shipped"]


def test_async_requests_run_on_the_callers_event_loop_side_by_side() -> None:
    async def five_at_once() -> float:
        async with httpx.AsyncClient(headers=KEY) as client:
            started = time.perf_counter()
            answers = await asyncio.gather(*(client.get(f"{API}/me") for _ in range(5)))
            assert [answer.status_code for answer in answers] == [200] * 5
            return time.perf_counter() - started

    with mock_postscript(faults={"latency_ms": (1000, 1000)}):
        elapsed = asyncio.run(five_at_once())
    assert elapsed < 4  # one after another would take 5 s; side by side about 1 s


def test_sync_clients_in_threads_share_one_emulator() -> None:
    with mock_postscript(rate_limit=0) as postscript:
        ada = postscript.seed(phone_number=ADA)
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(find_by_phone, [ADA] * 8))
        assert all(s[0]["id"] == ada.id for s in found)
        assert len(postscript.requests) == 8


def test_each_use_starts_a_fresh_emulator_with_the_options_given() -> None:
    seeded = [{"phone_number": ADA}]
    with mock_postscript(subscribers=seeded, faults={"latency_ms": (1, 2)}) as first:
        first.seed(phone_number="+15555550101")
        assert len(first.subscribers) == 2
        assert first.fault_settings.latency_ms == (1.0, 2.0)
    with mock_postscript(subscribers=seeded, rate_limit=0) as second:
        assert [s.phone_number for s in second.subscribers] == [ADA]
        assert second.fault_settings.rate_limit_rps == 0.0


def test_the_key_is_checked_as_postscript_would() -> None:
    with mock_postscript(secret_key="sk_mine"):
        assert httpx.get(f"{API}/me", headers=KEY).status_code == 401
        assert httpx.get(f"{API}/me", headers={"Authorization": "Bearer sk_mine"}).is_success


def test_the_default_rate_limit_is_postscripts_15_per_second() -> None:
    with mock_postscript(), httpx.Client(headers=KEY) as client:
        started = time.monotonic()
        statuses = [client.get(f"{API}/me").status_code for _ in range(60)]
        elapsed = time.monotonic() - started
    assert statuses[:15] == [200] * 15  # a full bucket of 15
    # then no more than the bucket refills at 15/s, however slow this machine is today
    assert statuses.count(200) <= 15 + math.ceil(15 * elapsed)
    assert statuses.count(429) >= 1


def test_a_timeout_fault_drops_the_connection_for_the_code_under_test() -> None:
    with mock_postscript(faults={"timeout_rate": 1.0, "timeout_ms": 10}):
        with pytest.raises(httpx.RemoteProtocolError):
            find_by_phone(ADA)

        async def me() -> None:
            async with httpx.AsyncClient(headers=KEY) as client:
                await client.get(f"{API}/me")

        with pytest.raises(httpx.RemoteProtocolError):
            asyncio.run(me())


def test_a_request_for_another_host_fails_naming_it_and_the_ways_out() -> None:
    with pytest.raises(UnroutedRequest) as unrouted, mock_postscript():
        httpx.get("https://hooks.example.com/shipped")
    message = str(unrouted.value)
    assert "GET https://hooks.example.com/shipped" in message
    assert "pass_through" in message
    assert "respx" in message


def post_and_carry_on(url: str) -> None:
    """Code under test that catches every error and carries on."""
    with contextlib.suppress(AssertionError):
        httpx.post(url)


def test_a_swallowed_unrouted_request_still_fails_when_the_block_ends() -> None:
    swallowed = r"1 request\(s\).*carried on: POST https://x\.example/"
    with pytest.raises(UnroutedRequest, match=swallowed), mock_postscript():
        post_and_carry_on("https://x.example/")


def test_other_hosts_answer_empty_200s_when_told_or_pass_through() -> None:
    with mock_postscript(assert_all_mocked=False):
        answer = httpx.get("https://hooks.example.com/")
        assert (answer.status_code, answer.content) == (200, b"")
    with respx.mock() as outer, mock_postscript(pass_through=["https://hooks.example.com"]):
        # the pass-through reaches the next transport, here an outer respx mock
        outer.get("https://hooks.example.com/").respond(204)
        assert httpx.get("https://hooks.example.com/").status_code == 204


def test_a_respx_router_of_your_own_serves_other_hosts_alongside() -> None:
    with mock_postscript() as postscript, respx.mock() as hooks:
        hooks.post("https://hooks.example.com/shipped").respond(202)
        ada = postscript.seed(phone_number=ADA)
        assert httpx.post("https://hooks.example.com/shipped").status_code == 202
        assert find_by_phone(ADA)[0]["id"] == ada.id


def test_a_decorated_function_gets_a_fresh_emulator_per_call() -> None:
    @mock_postscript
    def count_after_seeding(postscript: Postscript) -> int:
        postscript.seed(phone_number=ADA)
        return len(find_by_phone(ADA))

    assert "postscript" not in inspect.signature(count_after_seeding).parameters
    assert [count_after_seeding(), count_after_seeding()] == [1, 1]


def test_a_decorated_async_function_is_served_and_without_a_handle_parameter_too() -> None:
    @mock_postscript(secret_key="sk_test_pslab", rate_limit=0)
    async def me() -> int:
        async with httpx.AsyncClient(headers=KEY) as client:
            return (await client.get(f"{API}/me")).status_code

    assert inspect.iscoroutinefunction(me)
    assert asyncio.run(me()) == 200


def test_routing_ends_with_the_block() -> None:
    with mock_postscript():
        pass
    with respx.mock() as after:
        after.get(f"{API}/me").respond(418)
        assert httpx.get(f"{API}/me").status_code == 418


def test_one_mock_cannot_be_entered_twice_and_base_url_must_be_an_origin() -> None:
    mock = mock_postscript()
    with mock, pytest.raises(RuntimeError, match="already active"), mock:
        pass
    with pytest.raises(ValueError, match="base_url must be an origin"):
        mock_postscript(base_url="https://api.postscript.io/api/v2")


def test_another_base_url_is_routed_instead() -> None:
    with mock_postscript(base_url="http://postscript.test:8080") as postscript:
        ada = postscript.seed(phone_number=ADA)
        answer = httpx.get("http://postscript.test:8080/api/v2/subscribers/" + ada.id, headers=KEY)
        assert answer.json()["id"] == ada.id
    with pytest.raises(UnroutedRequest), mock_postscript(base_url="http://postscript.test:8080"):
        httpx.get(f"{API}/me", headers=KEY)


def test_stopping_leaves_no_thread_behind() -> None:
    before = {t.name for t in threading.enumerate()}
    with mock_postscript():
        find_by_phone(ADA)
    assert {t.name for t in threading.enumerate()} - before == set()
