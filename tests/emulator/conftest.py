"""Fixtures for the Postscript emulator's tests: an app and an authenticated in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from emulator.postscript.app import create_app
from emulator.postscript.config import EmulatorConfig

SECRET = "sk_test_pslab"


@pytest.fixture
def emulator_app() -> Starlette:
    """An emulator with the rate limit off, so tests are not paced by it."""
    return create_app(EmulatorConfig(rate_limit_rps=0))


@pytest.fixture
async def api(emulator_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends the emulator's key on every request."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator_app),
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as client:
        yield client


async def seed(client: httpx.AsyncClient, *subscribers: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/_emulator/subscribers", json={"subscribers": list(subscribers)})
    assert response.status_code == 200, response.text
    created: list[dict[str, Any]] = response.json()["subscribers"]
    return created
