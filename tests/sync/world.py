"""An in-process Postscript emulator, and the engine wired to it (test helper)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from emulator.postscript.app import create_app
from emulator.postscript.config import EmulatorConfig
from sync.engine import Engine
from sync.report import Report
from sync.settings import Settings

SECRET = "sk_test_pslab"
BASE_URL = "http://emulator"


class World:
    """One emulator app (reused across hypothesis examples through the admin reset)."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.app = create_app(config or EmulatorConfig(secret_key=SECRET, rate_limit_rps=0))
        self.transport = httpx.ASGITransport(app=self.app)

    def settings(self, state_path: Path, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "base_url": BASE_URL,
            "secret_key": SECRET,
            "state_path": state_path,
            "rate_limit": 0,
        }
        return Settings(**{**values, **overrides})

    async def admin(self, method: str, path: str, body: object = None) -> Any:
        async with httpx.AsyncClient(transport=self.transport, base_url=BASE_URL) as client:
            response = await client.request(method, f"/_emulator/{path}", json=body)
            response.raise_for_status()
            return response.json()

    async def reset(self) -> None:
        await self.admin("POST", "reset")
        await self.admin("PUT", "faults", {})

    async def seed(self, *subscribers: Mapping[str, Any]) -> list[dict[str, Any]]:
        created = await self.admin("POST", "subscribers", {"subscribers": list(subscribers)})
        return list(created["subscribers"])

    async def faults(self, **settings: Any) -> None:
        await self.admin("PUT", "faults", settings)

    async def state(self) -> dict[str, Any]:
        return dict(await self.admin("GET", "state"))

    async def sync(
        self,
        state_path: Path,
        events: Iterable[str | Mapping[str, Any]],
        transport: httpx.AsyncBaseTransport | None = None,
        **overrides: Any,
    ) -> Report:
        """One engine run: ingest `events`, drain, close (like one `pslab sync`)."""
        with Engine(self.settings(state_path, **overrides), transport or self.transport) as engine:
            engine.ingest(events)
            return await engine.drain()


def audiences_of(subscriber: Mapping[str, Any]) -> list[str]:
    return list((subscriber.get("properties") or {}).get("Segment Audiences") or [])


def by_identity(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Subscribers by phone and by lower-cased email."""
    index: dict[str, dict[str, Any]] = {}
    for subscriber in state["subscribers"]:
        if subscriber.get("email"):
            index[str(subscriber["email"]).lower()] = subscriber
        if subscriber.get("phone_number"):
            index[str(subscriber["phone_number"])] = subscriber
    return index
