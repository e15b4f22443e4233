"""The admin surface of docs/design/emulator.md: reset, seed, state, the request journal and
faults."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.web.journal import MAX_QUERY_CHARS, Journal
from tests.emulator.conftest import SECRET, seed

pytestmark = pytest.mark.anyio


async def test_seed_answers_the_stored_subscribers_with_ids(api: httpx.AsyncClient) -> None:
    created = await seed(
        api,
        {
            "phone_number": "+15555550100",
            "email": "a@example.com",
            "properties": {"Segment Audiences": ["vip"]},
            "tags": ["t"],
            "id": "s_given",
            "created_at": "2024-01-01T00:00:00Z",
        },
        {"email": "only-email@example.com"},
    )
    assert created[0]["id"] == "s_given"
    assert created[0]["created_at"] == "2024-01-01T00:00:00.000000+00:00"
    assert created[0]["properties"] == {"Segment Audiences": ["vip"]}
    assert created[0]["subscriptions"]["promotional"]["can_send"] is True
    assert created[1]["id"].startswith("s_")
    assert created[1]["phone_number"] is None
    assert [c["ps_id"] for c in created] == [1, 2]


@pytest.mark.parametrize(
    "body",
    [
        {"subscribers": [{"phone_number": "+15555550100"}, {"phone_number": "15555550100"}]},
        {"subscribers": [{"id": "s_same"}, {"id": "s_same"}]},
        {"subscribers": [{"phone_number": "+15555550101"}, {"phone_number": "nope"}]},
        {"subscribers": [{"created_at": "last week"}]},
        {"subscribers": [{"nickname": "x"}]},
        {"subscribers": [{"subscriptions": {"promotional": {"can_send": "yes"}}}]},
        {"subscribers": {"phone_number": "+15555550100"}},
        {"people": []},
    ],
)
async def test_bad_seed_is_a_400_and_stores_nothing(
    api: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await api.post("/_emulator/subscribers", json=body)
    assert response.status_code == 400
    assert response.json()["errors"]
    assert (await api.get("/_emulator/state")).json()["subscribers"] == []


async def test_seed_rejects_a_phone_already_stored(api: httpx.AsyncClient) -> None:
    await seed(api, {"phone_number": "+15555550100"})
    response = await api.post(
        "/_emulator/subscribers", json={"subscribers": [{"phone_number": "(555) 555-0100"}]}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "subscribers", 0, "phone_number"]


async def test_state_shows_subscribers_and_events(api: httpx.AsyncClient) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    posted = await api.post("/api/v2/events", json={"type": "Hi", "subscriber_id": created["id"]})
    assert posted.status_code == 202, posted.text
    state = (await api.get("/_emulator/state")).json()
    assert state["subscribers"] == [created]
    assert [e["type"] for e in state["events"]] == ["Hi"]
    assert state["events"][0]["event_id"].startswith("ev_")


async def test_journal_records_api_calls_but_not_admin_calls(api: httpx.AsyncClient) -> None:
    await api.get("/api/v2/subscribers", params={"phone_number__eq": "+15555550100"})
    await api.get("/api/v2/me", headers={"Authorization": "Bearer wrong"})
    await api.get("/_emulator/state")
    entries = (await api.get("/_emulator/requests")).json()["requests"]
    assert [(e["method"], e["path"], e["query"], e["status"]) for e in entries] == [
        ("GET", "/api/v2/subscribers", "phone_number__eq=%2B15555550100", 200),
        ("GET", "/api/v2/me", "", 401),
    ]
    assert all(e["time"] for e in entries)
    assert "wrong" not in str(entries)


async def test_reset_forgets_subscribers_events_and_journal(api: httpx.AsyncClient) -> None:
    (created,) = await seed(api, {"phone_number": "+15555550100"})
    posted = await api.post("/api/v2/events", json={"type": "Hi", "subscriber_id": created["id"]})
    assert posted.status_code == 202, posted.text
    before = (await api.get("/_emulator/state")).json()
    assert (len(before["subscribers"]), len(before["events"])) == (1, 1)
    assert (await api.get("/_emulator/requests")).json()["requests"] != []
    response = await api.post("/_emulator/reset")
    state = (await api.get("/_emulator/state")).json()
    journal = (await api.get("/_emulator/requests")).json()
    (again,) = await seed(api, {"phone_number": "+15555550100"})
    assert response.status_code == 200
    assert state == {"subscribers": [], "events": []}
    assert journal == {"requests": []}
    assert again["ps_id"] == 1


async def test_faults_put_then_get_shows_the_setting(api: httpx.AsyncClient) -> None:
    setting = {
        "error_rate": 0.1,
        "error_statuses": [500, 503],
        "latency_ms": [0, 50],
        "timeout_rate": 0.01,
        "timeout_ms": 1000,
        "rate_limit_rps": 15,
        "seed": 7,
    }
    put = await api.put("/_emulator/faults", json=setting)
    got = await api.get("/_emulator/faults")
    assert put.status_code == 200
    assert got.json() == put.json() == setting


async def test_faults_put_replaces_the_whole_setting_but_keeps_the_rate_limit(
    api: httpx.AsyncClient,
) -> None:
    first = await api.put("/_emulator/faults", json={"error_rate": 0.5, "rate_limit_rps": 3})
    assert first.status_code == 200, first.text
    assert first.json()["error_rate"] == 0.5
    got = (await api.put("/_emulator/faults", json={})).json()
    assert got["error_rate"] == 0
    assert got["rate_limit_rps"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 2},
        {"error_rate": "0.1"},
        {"error_statuses": [200]},
        {"error_statuses": []},
        {"latency_ms": [50, 10]},
        {"latency_ms": [1]},
        {"timeout_rate": -0.1},
        {"timeout_ms": -1},
        {"rate_limit_rps": -1},
        {"seed": "seven"},
        {"chaos": True},
    ],
)
async def test_bad_fault_settings_are_a_400(
    api: httpx.AsyncClient, body: dict[str, object]
) -> None:
    before = (await api.get("/_emulator/faults")).json()
    response = await api.put("/_emulator/faults", json=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"][0] == "body"
    assert (await api.get("/_emulator/faults")).json() == before


async def test_journal_keeps_only_the_latest_entries() -> None:
    app = create_app(EmulatorConfig(rate_limit_rps=0, journal_size=3))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as api:
        for page in range(1, 6):
            await api.get("/api/v2/subscribers", params={"page": page})
        entries = (await api.get("/_emulator/requests")).json()["requests"]
    assert [e["query"] for e in entries] == ["page=3", "page=4", "page=5"]


async def test_a_long_url_is_journaled_cut_short_with_its_length(api: httpx.AsyncClient) -> None:
    query = "email__in=" + "x" * 60_000
    await api.get(f"/api/v2/subscribers?{query}")
    (entry,) = (await api.get("/_emulator/requests")).json()["requests"]
    assert entry["query"].startswith(query[:MAX_QUERY_CHARS])
    assert entry["query"].endswith(
        f"…[{len(query):,} characters; the journal keeps the first 8,192]"
    )
    assert len(entry["query"]) < MAX_QUERY_CHARS + 100


def test_the_journal_forgets_its_oldest_entries_past_its_character_budget() -> None:
    journal = Journal(size=100, max_chars=1000)
    for number in range(10):
        journal.append({"path": f"/{number}", "query": "q" * 298, "time": datetime.now(UTC)})
    assert [entry["path"] for entry in journal.entries()] == ["/7", "/8", "/9"]
    assert journal.total == 10


# Run in a fresh interpreter, so that what the process holds is the emulator's alone.
RSS_AFTER_RESET = """
import asyncio, json, os, httpx
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.config import EmulatorConfig

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

async def main():
    app = create_app(EmulatorConfig(secret_key="sk", rate_limit_rps=0))
    headers = {"Authorization": "Bearer sk"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://e", headers=headers) as api:
        await api.get("/api/v2/me")
        start = rss()
        for number in range(3000):
            await api.get(f"/api/v2/subscribers?email__in={number}{'x' * 7000}")
        peak = rss()
        await api.post("/_emulator/reset")
        print(json.dumps({"start": start, "peak": peak, "after": rss()}))

asyncio.run(main())
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_a_reset_gives_the_journals_memory_back_to_the_system() -> None:
    result = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", RSS_AFTER_RESET],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rss = json.loads(result.stdout)
    grown = rss["peak"] - rss["start"]
    assert grown > 15_000_000  # 3,000 entries of 7 KB: the journal held about 21 MB
    assert rss["after"] - rss["start"] < grown / 3


async def test_openapi_document_is_served_without_a_key(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    assert "/api/v2/subscribers/{id}" in response.json()["paths"]
