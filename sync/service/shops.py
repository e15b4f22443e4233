"""Many shops in one `pslab serve` (docs/design/service.md#many-shops).

Each shop is a whole `Service` (its engine, state file, credentials, drain loop
and metrics), mounted at `/shops/<name>`, so a shop answers exactly the routes,
statuses and 401s a single-shop process does. What this adds is what a process
has once: `/health`, a `/status` listing the shops, a `/metrics` whose samples
carry a `shop` label, one lifespan that runs every shop's drain (each paced by
its own key's rate limit), and the shop's name on every log record of its
requests and drain (`logs.SERVING_SHOP`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import prometheus_client
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from stamina.instrumentation import RetryDetails
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from postscript_audience_lab.httpguard import GuardCounts
from postscript_audience_lab.sync.service.app import Service
from postscript_audience_lab.sync.service.logs import SERVING_SHOP
from postscript_audience_lab.sync.service.metrics import CONTENT_TYPE

__all__ = ["Shops"]

# What the top-level /status shows of each shop; the whole of it is at /shops/<name>/status.
SUMMARY = (
    "shop",
    "drain",
    "pending",
    "writes_in_progress",
    "parked",
    "next_parked_retry_in_s",
    "oldest_pending_age_s",
    "drain_rate_per_s",
    "paused_because",
    "last_error",
)


class Shops:
    """Every shop's `Service` behind one app; `check_keys` before serving, then `app`."""

    def __init__(self, services: Mapping[str, Service], *, connections: GuardCounts | None = None):
        self.services = dict(services)
        self.connections = connections
        self.accepting = True
        self._started = time.monotonic()
        self.registry = prometheus_client.CollectorRegistry()
        self.registry.register(_ShopLabel(self.services))
        routes: list[Route | Mount] = [
            Mount(f"/shops/{name}", app=_as_shop(name, service.app))
            for name, service in self.services.items()
        ]
        routes += [
            Route("/health", self._health, methods=["GET"]),
            Route("/status", self._status, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes, lifespan=self._lifespan)

    async def check_keys(self) -> dict[str, Exception]:
        """`GET /me` for every shop at once; what refused each shop that failed, by name."""
        refused: dict[str, Exception] = {}

        async def check(name: str, service: Service) -> None:
            try:
                await service.engine.check_shop()
            except Exception as failure:  # every shop is checked, whichever fails first
                refused[name] = failure

        async with anyio.create_task_group() as tasks:
            for name, service in self.services.items():
                tasks.start_soon(check, name, service)
        return {name: refused[name] for name in self.services if name in refused}

    def stop_accepting(self) -> None:
        """Every shop answers 503 from now on, and every drain winds down at once."""
        self.accepting = False
        for service in self.services.values():
            service.stop_accepting()

    def on_retry(self, details: RetryDetails) -> None:
        """A stamina hook (one per process): counted for the shop whose drain retried."""
        service = self.services.get(SERVING_SHOP.get() or "")
        if service is not None:
            service.on_retry(details)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as running:
            for name, service in self.services.items():
                # The drain's tasks copy the context as they start: its records name the shop.
                token = SERVING_SHOP.set(name)
                try:
                    await running.enter_async_context(service.running())
                finally:
                    SERVING_SHOP.reset(token)
            yield
            self.stop_accepting()  # all drains wind down together, not one after another

    async def _health(self, request: Request) -> Response:
        if not self.accepting:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def _status(self, request: Request) -> Response:
        return JSONResponse(self.status())

    async def _metrics(self, request: Request) -> Response:
        body = prometheus_client.generate_latest(self.registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE})

    def status(self) -> dict[str, Any]:
        """What `GET /status` answers: the process, and a summary of each shop."""
        shops = {}
        for name, service in self.services.items():
            full = service.status()
            shops[name] = {key: full[key] for key in SUMMARY} | {"status": f"/shops/{name}/status"}
        guard = {} if self.connections is None else {"connections": self.connections.as_dict()}
        return {
            "accepting": self.accepting,
            "pending": sum(shop["pending"] for shop in shops.values()),
            "parked": sum(shop["parked"] for shop in shops.values()),
            "shops": shops,
            "intake": guard,
            "uptime_s": round(time.monotonic() - self._started, 1),
        }


def _as_shop(name: str, app: ASGIApp) -> ASGIApp:
    """`app`, with `name` as the serving shop while it handles a request (for its log records)."""

    async def shop_app(scope: Scope, receive: Receive, send: Send) -> None:
        token = SERVING_SHOP.set(name)
        try:
            await app(scope, receive, send)
        finally:
            SERVING_SHOP.reset(token)

    return shop_app


class _ShopLabel(Collector):
    """Every shop's metrics as one family per name, each sample labelled with its shop.

    Each shop keeps its own registry (it is a whole `Service`); Prometheus' text format
    allows a family once, so the shops' families are merged here rather than concatenated.
    """

    def __init__(self, services: Mapping[str, Service]) -> None:
        self._services = services

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for name, service in self._services.items():
            for family in service.metrics.registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = Metric(family.name, family.documentation, family.type, family.unit)
                    families[family.name] = merged
                for sample in family.samples:
                    labels = {"shop": name, **sample.labels}
                    merged.add_sample(
                        sample.name, labels, sample.value, sample.timestamp, sample.exemplar
                    )
        return families.values()
