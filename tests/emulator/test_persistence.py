"""`state_path`: subscribers and events survive a restart; without it, nothing is written."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.model.shops import parse_tenancy
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, seed

pytestmark = pytest.mark.anyio


def _client(state_path: Path | None) -> httpx.AsyncClient:
    app = create_app(EmulatorConfig(rate_limit_rps=0, state_path=state_path))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    )


async def test_a_new_state_file_and_its_log_are_their_owners_alone(tmp_path: Path) -> None:
    state_path = tmp_path / "emulator.sqlite"
    async with _client(state_path) as api:
        await seed(api, {"phone_number": "+15555550100"})
        wal = state_path.with_name(state_path.name + "-wal")
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (state_path, wal)}
    assert modes == {"emulator.sqlite": 0o600, "emulator.sqlite-wal": 0o600}


async def test_subscribers_and_events_survive_a_restart(tmp_path: Path) -> None:
    state_path = tmp_path / "emulator.sqlite"
    async with _client(state_path) as api:
        first, _ = await seed(
            api, {"phone_number": "+15555550100", "email": "a@example.com"}, {"email": "b@x.org"}
        )
        writes = [
            await api.patch(
                f"/api/v2/subscribers/{first['id']}",
                json={"properties": {"k": [1]}, "tags": ["t"]},
            ),
            await api.post("/api/v2/subscribers", json={"phone_number": "+15555550102"}),
            await api.post("/api/v2/events", json={"type": "Hi", "subscriber_id": first["id"]}),
            await api.patch(
                "/api/v2/compliance/unsubscribe", json={"phone_number": "+15555550102"}
            ),
        ]
        assert [w.status_code for w in writes] == [200, 201, 202, 202], [w.text for w in writes]
        created = writes[1].json()
        before = (await api.get("/_emulator/state")).json()
    async with _client(state_path) as api:
        after = (await api.get("/_emulator/state")).json()
        by_phone = await api.get("/api/v2/subscribers", params={"phone_number__eq": "5555550100"})
        by_email = await api.get("/api/v2/subscribers", params={"email__eq": "B@X.ORG"})
        (next_one,) = await seed(api, {"phone_number": "+15555550103"})
    assert after == before
    assert len(after["subscribers"]) == 3
    assert after["subscribers"][2]["id"] == created["id"]
    assert [s["id"] for s in by_phone.json()["subscribers"]] == [first["id"]]
    assert len(by_email.json()["subscribers"]) == 1
    assert next_one["ps_id"] == 4


async def test_reset_is_kept_across_a_restart(tmp_path: Path) -> None:
    state_path = tmp_path / "emulator.sqlite"
    async with _client(state_path) as api:
        await seed(api, {"phone_number": "+15555550100"})
        (await api.post("/_emulator/reset")).raise_for_status()
    async with _client(state_path) as api:
        state = (await api.get("/_emulator/state")).json()
    assert state == {"subscribers": [], "events": []}


async def test_without_a_state_path_a_new_app_starts_empty() -> None:
    async with _client(None) as api:
        await seed(api, {"phone_number": "+15555550100"})
    async with _client(None) as api:
        state = (await api.get("/_emulator/state")).json()
    assert state["subscribers"] == []


def test_a_file_that_is_not_sqlite_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a database, just some text " * 100)
    with pytest.raises(ValueError, match="state file"):
        create_app(EmulatorConfig(state_path=bogus))


async def test_a_single_shop_state_file_is_adopted_by_the_default_shop(tmp_path: Path) -> None:
    state_path = tmp_path / "old.sqlite"
    async with _client(state_path) as api:
        (written,) = await seed(api, {"phone_number": "+15555550100", "email": "a@example.com"})
        event = {"type": "Hi", "subscriber_id": written["id"]}
        assert (await api.post("/api/v2/events", json=event)).status_code == 202
        before = (await api.get("/_emulator/state")).json()
    _to_single_shop_tables(state_path)
    async with _client(state_path) as api:
        after = (await api.get("/_emulator/state")).json()
        found = await api.get(f"/api/v2/subscribers/{written['id']}")
    assert after == before
    assert found.status_code == 200
    with closing(sqlite3.connect(state_path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert {"subscribers", "events"} & tables == set()


def _to_single_shop_tables(path: Path) -> None:
    """Rewrite a state file in the layout of an emulator with one shop (before shops)."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            "CREATE TABLE subscribers (id TEXT PRIMARY KEY, ps_id INTEGER NOT NULL, doc TEXT);"
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);"
            "INSERT INTO subscribers SELECT id, ps_id, doc FROM shop_subscribers;"
            "INSERT INTO events (doc) SELECT doc FROM shop_events ORDER BY seq;"
            "DROP TABLE shop_subscribers; DROP TABLE shop_events;"
        )


async def test_each_shop_keeps_its_own_subscribers_across_a_restart(tmp_path: Path) -> None:
    tenancy = parse_tenancy(
        {"shops": [{"id": "shop_a", "secret_key": "sk_a"}, {"id": "shop_b", "secret_key": "sk_b"}]}
    )
    config = EmulatorConfig(rate_limit_rps=0, state_path=tmp_path / "s.sqlite", tenancy=tenancy)
    for restart in (False, True):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(config)), base_url="http://emulator"
        ) as admin:
            if not restart:
                for shop, phone in (("shop_a", "+15555550100"), ("shop_b", "+15555550100")):
                    body = {"shop": shop, "subscribers": [{"phone_number": phone, "id": "s_same"}]}
                    (await admin.post("/_emulator/subscribers", json=body)).raise_for_status()
            states = [
                (await admin.get("/_emulator/state", params={"shop": shop})).json()
                for shop in ("shop_a", "shop_b")
            ]
    assert [[s["id"] for s in state["subscribers"]] for state in states] == [["s_same"]] * 2
