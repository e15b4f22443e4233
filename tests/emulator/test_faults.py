"""Injected faults: errors, latency and timeouts, seeded and without state changes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.web.faults import ConnectionDropped
from tests.emulator.conftest import seed

pytestmark = pytest.mark.anyio


async def _set_faults(api: httpx.AsyncClient, **faults: Any) -> None:
    response = await api.put("/_emulator/faults", json=faults)
    assert response.status_code == 200, response.text


async def _statuses(api: httpx.AsyncClient, faults: dict[str, Any], n: int) -> list[int]:
    await _set_faults(api, **faults)
    return [(await api.get("/api/v2/me")).status_code for _ in range(n)]


async def test_error_rate_answers_the_configured_statuses_with_an_envelope(
    api: httpx.AsyncClient,
) -> None:
    await _set_faults(api, error_rate=1, error_statuses=[503])
    response = await api.get("/api/v2/me")
    assert response.status_code == 503
    # Postscript publishes no 5xx code: the status stands in, and the answer says so
    assert response.json() == {
        "error_code": 503,
        "error_message": "Service Unavailable",
        "success": False,
    }
    assert response.headers["x-pslab-emulator-choice"] == "error-code-stand-in"


async def test_an_injected_429_has_the_rate_limit_body(api: httpx.AsyncClient) -> None:
    await _set_faults(api, error_rate=1, error_statuses=[429])
    response = await api.get("/api/v2/me")
    assert response.status_code == 429
    assert response.json() == {
        "error_code": 3002,
        "error_message": "Rate limit exceeded",
        "success": False,
    }
    assert "x-pslab-emulator-choice" not in response.headers  # documented exactly


async def test_the_same_seed_gives_the_same_faults(api: httpx.AsyncClient) -> None:
    faults = {"error_rate": 0.5, "error_statuses": [500, 502, 503], "seed": 7}
    first = await _statuses(api, faults, 40)
    second = await _statuses(api, faults, 40)
    assert first == second
    assert {200, 500, 502, 503} <= set(first)


async def test_a_faulted_write_changes_nothing(api: httpx.AsyncClient) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    await _set_faults(api, error_rate=1, error_statuses=[500])
    patched = await api.patch(f"/api/v2/subscribers/{created['id']}", json={"properties": {"a": 1}})
    posted = await api.post("/api/v2/events", json={"type": "X", "subscriber_id": created["id"]})
    state = (await api.get("/_emulator/state")).json()
    assert (patched.status_code, posted.status_code) == (500, 500)
    assert state == {"subscribers": [created], "events": []}


async def test_faults_are_journaled_with_their_kind(api: httpx.AsyncClient) -> None:
    await _set_faults(api, error_rate=1, error_statuses=[502])
    await api.get("/api/v2/me")
    (entry,) = (await api.get("/_emulator/requests")).json()["requests"]
    assert (entry["status"], entry["fault"]) == (502, "error")


async def test_latency_holds_each_request_within_the_range(api: httpx.AsyncClient) -> None:
    await _set_faults(api, latency_ms=[30, 40], seed=1)
    for _ in range(3):
        assert (await api.get("/api/v2/me")).status_code == 200
    entries = (await api.get("/_emulator/requests")).json()["requests"]
    # a lower bound only: the sleep is at least what was drawn
    assert len(entries) == 3
    assert all(e["duration_ms"] >= 30 for e in entries)


async def test_timeout_drops_the_connection_in_process_and_changes_nothing(
    api: httpx.AsyncClient,
) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    await _set_faults(api, timeout_rate=1, timeout_ms=10)
    with pytest.raises(httpx.RemoteProtocolError) as dropped:
        await api.patch(f"/api/v2/subscribers/{created['id']}", json={"properties": {"a": 1}})
    assert isinstance(dropped.value, ConnectionDropped)
    await _set_faults(api)
    state = (await api.get("/_emulator/state")).json()
    (entry,) = (await api.get("/_emulator/requests")).json()["requests"]
    assert state["subscribers"] == [created]
    assert (entry["status"], entry["fault"]) == (None, "timeout")


async def test_admin_calls_are_never_faulted(api: httpx.AsyncClient) -> None:
    await _set_faults(api, error_rate=1, timeout_rate=1, timeout_ms=1)
    with pytest.raises(httpx.RemoteProtocolError):  # the faults are on for the API...
        await api.get("/api/v2/me")
    assert (await api.get("/_emulator/state")).status_code == 200  # ...and not for admin
