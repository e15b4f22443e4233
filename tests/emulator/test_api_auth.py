"""Auth (Bearer and legacy Basic) and the per-key rate limit (docs/design/postscript-api.md)."""

from __future__ import annotations

import base64

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app

pytestmark = pytest.mark.anyio

RATE_LIMITED = {"error_code": 3002, "error_message": "Rate limit exceeded", "success": False}


def _client(config: EmulatorConfig, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(config)),
        base_url="http://emulator",
        headers=headers,
    )


def _basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization", ["Bearer sk_test_pslab", _basic("sk_test_pslab"), _basic("sk_test_pslab", "x")]
)
async def test_bearer_and_basic_with_the_key_as_user_are_accepted(authorization: str) -> None:
    async with _client(EmulatorConfig(), Authorization=authorization) as api:
        assert (await api.get("/api/v2/me")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": "Token sk_test_pslab"},
        {"Authorization": "Basic !!!"},
        {"Authorization": _basic("", "sk_test_pslab")},
    ],
)
async def test_missing_or_wrong_key_is_401_with_the_error_code_envelope(
    headers: dict[str, str],
) -> None:
    async with _client(EmulatorConfig(), **headers) as api:
        response = await api.get("/api/v2/subscribers")
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error_code", "error_message", "success"}
    assert body["success"] is False
    assert "wrong" not in body["error_message"]


async def test_admin_surface_needs_no_key() -> None:
    async with _client(EmulatorConfig()) as admin:
        assert (await admin.get("/_emulator/state")).status_code == 200


async def test_requests_over_the_rate_are_429_with_the_exact_body() -> None:
    # at 0.01 rps the bucket holds one token and takes 100 s to earn the next
    async with _client(
        EmulatorConfig(rate_limit_rps=0.01), Authorization="Bearer sk_test_pslab"
    ) as api:
        first = await api.get("/api/v2/me")
        limited = await api.get("/api/v2/me")
    assert first.status_code == 200
    assert limited.status_code == 429
    assert limited.json() == RATE_LIMITED
    assert "retry-after" not in limited.headers


async def test_rate_limit_zero_means_no_limit() -> None:
    async with _client(
        EmulatorConfig(rate_limit_rps=0), Authorization="Bearer sk_test_pslab"
    ) as api:
        statuses = {(await api.get("/api/v2/me")).status_code for _ in range(100)}
    assert statuses == {200}


async def test_rate_limit_applies_per_key_and_not_to_admin_calls() -> None:
    async with _client(EmulatorConfig(rate_limit_rps=0.01)) as client:
        first = await client.get("/api/v2/me", headers={"Authorization": "Bearer sk_test_pslab"})
        second = await client.get("/api/v2/me", headers={"Authorization": "Bearer sk_test_pslab"})
        admin = [(await client.get("/_emulator/state")).status_code for _ in range(5)]
    assert (first.status_code, second.status_code) == (200, 429)
    assert second.json() == RATE_LIMITED
    assert admin == [200] * 5


async def test_rate_limit_can_be_changed_through_the_faults_call() -> None:
    async with _client(
        EmulatorConfig(rate_limit_rps=0), Authorization="Bearer sk_test_pslab"
    ) as api:
        (await api.put("/_emulator/faults", json={"rate_limit_rps": 0.01})).raise_for_status()
        statuses = [(await api.get("/api/v2/me")).status_code for _ in range(3)]
    assert statuses[0] == 200
    assert statuses[1:] == [429, 429]
