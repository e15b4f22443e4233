"""An in-process Postscript emulator, and the engine wired to it (test helper)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.settings import Settings

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


Hook = Callable[[httpx.Request], Awaitable[None]]


class Tap(httpx.AsyncBaseTransport):
    """Wraps a transport: `before` runs ahead of each request, `after` once it was answered.

    Either may raise to simulate a crash at that point (the request then never
    reached, or did reach, the emulator).
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, before: Hook | None = None, after: Hook | None = None
    ) -> None:
        self.inner = inner
        self.before = before
        self.after = after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.before is not None:
            await self.before(request)
        response = await self.inner.handle_async_request(request)
        if self.after is not None:
            await response.aread()
            await self.after(request)
        return response


class Crash(Exception):
    """A simulated process crash (not retryable)."""


def crash_on(method: str, path_prefix: str, times: int = 1) -> Hook:
    """A hook that raises `Crash` on the first `times` matching requests."""
    remaining = [times]

    async def hook(request: httpx.Request) -> None:
        if request.method == method and request.url.path.startswith(path_prefix) and remaining[0]:
            remaining[0] -= 1
            raise Crash(f"crash at {method} {request.url.path}")

    return hook
