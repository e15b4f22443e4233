"""The emulator on a real uvicorn server over loopback (serve_in_background)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web import serve
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from tests.emulator.conftest import SECRET


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_background(EmulatorConfig(rate_limit_rps=0)) as url:
        yield url


@pytest.fixture
def admin(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url) as client:
        client.post("/_emulator/reset").raise_for_status()
        client.put("/_emulator/faults", json={}).raise_for_status()
        yield client


def test_serves_on_a_loopback_port(base_url: str, admin: httpx.Client) -> None:
    assert base_url.startswith("http://127.0.0.1:")
    response = httpx.get(f"{base_url}/api/v2/me", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200


@pytest.fixture
def one_emulator_on_five_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Base URLs of five uvicorn servers, each on its own thread, all serving one emulator.

    One server runs every handler on its single event loop, so its requests never
    reach the store at the same time; five servers sharing the app do.
    """
    app = create_app(EmulatorConfig(rate_limit_rps=0))
    with ExitStack() as servers:
        with monkeypatch.context() as patched:
            patched.setattr(serve, "create_app", lambda config=None: app)
            urls = [servers.enter_context(serve_in_background()) for _ in range(5)]
        yield urls


@pytest.mark.anyio
@pytest.mark.usefixtures("slow_property_reads")
async def test_fifty_concurrent_patches_over_the_network_are_all_kept(
    one_emulator_on_five_servers: list[str],
) -> None:
    urls = one_emulator_on_five_servers
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {SECRET}"}, limits=limits, timeout=30
    ) as api:
        seeded = await api.post(
            f"{urls[0]}/_emulator/subscribers",
            json={"subscribers": [{"phone_number": "+15555550100"}]},
        )
        assert seeded.status_code == 200, seeded.text
        (created,) = seeded.json()["subscribers"]
        path = f"/api/v2/subscribers/{created['id']}"
        responses = await asyncio.gather(
            *(
                api.patch(
                    f"{urls[i % len(urls)]}{path}",
                    json={"properties": {f"k{i}": i}, "tags": [f"t{i}"]},
                )
                for i in range(50)
            )
        )
        final = (await api.get(f"{urls[1]}{path}")).json()
        state = (await api.get(f"{urls[2]}/_emulator/state")).json()
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses]
    assert final["properties"] == {f"k{i}": i for i in range(50)}
    assert sorted(final["tags"]) == sorted(f"t{i}" for i in range(50))
    assert len({r.json()["updated_at"] for r in responses}) == 50
    assert state["subscribers"] == [final]


def test_timeout_fault_drops_the_connection_over_the_network(
    base_url: str, admin: httpx.Client
) -> None:
    admin.put("/_emulator/faults", json={"timeout_rate": 1, "timeout_ms": 50}).raise_for_status()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{base_url}/api/v2/me", headers={"Authorization": f"Bearer {SECRET}"})
    (entry,) = admin.get("/_emulator/requests").json()["requests"]
    assert entry["fault"] == "timeout"


def test_a_client_timeout_shorter_than_the_hang_is_a_read_timeout(
    base_url: str, admin: httpx.Client
) -> None:
    admin.put("/_emulator/faults", json={"timeout_rate": 1, "timeout_ms": 500}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(
            f"{base_url}/api/v2/me", headers={"Authorization": f"Bearer {SECRET}"}, timeout=0.05
        )


def test_error_fault_over_the_network(base_url: str, admin: httpx.Client) -> None:
    admin.put(
        "/_emulator/faults", json={"error_rate": 1, "error_statuses": [500]}
    ).raise_for_status()
    response = httpx.get(f"{base_url}/api/v2/me", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 500
    assert response.json()["success"] is False


def test_the_server_stops_when_the_block_exits() -> None:
    with serve_in_background(EmulatorConfig()) as url:
        assert httpx.get(f"{url}/_emulator/faults").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_emulator/faults")
