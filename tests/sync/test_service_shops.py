"""Many shops in one service (docs/design/service.md#many-shops), in process: two shops of one
emulator, each with its own key, write key, state file and drain, behind one app."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.model.shops import parse_tenancy
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import AuthenticationError
from postscript_audience_lab.sync.service.app import Service
from postscript_audience_lab.sync.service.intake import Credentials
from postscript_audience_lab.sync.service.logs import JsonLines
from postscript_audience_lab.sync.service.metrics import ServiceMetrics
from postscript_audience_lab.sync.service.shops import Shops
from tests.sync.test_engine import PHONE, event
from tests.sync.world import World, audiences_of, by_identity

pytestmark = pytest.mark.anyio

KEYS = {"alpha": "sk_alpha_Secret0", "beta": "sk_beta_Secret1"}
WRITE_KEYS = {"alpha": "wk_alpha_Secret2", "beta": "wk_beta_Secret3"}
EMULATOR_SHOPS = {"alpha": "shop_a", "beta": "shop_b"}


@pytest.fixture
def world() -> World:
    """The emulator with two shops, each answering to its own key."""
    tenancy = {
        "shops": [{"id": EMULATOR_SHOPS[name], "secret_key": key} for name, key in KEYS.items()],
        "partners": [],
    }
    return World(EmulatorConfig(rate_limit_rps=0, tenancy=parse_tenancy(tenancy)))


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


@asynccontextmanager
async def serving_shops(
    world: World, folder: Path, keys: dict[str, str] = KEYS
) -> AsyncIterator[httpx.AsyncClient]:
    """Both shops behind one `Shops` app, its lifespan running (as `pslab serve --shops`)."""
    with ExitStack() as engines:
        services = {}
        for name, key in keys.items():
            metrics = ServiceMetrics()
            settings = world.settings(folder / f"{name}.sqlite", secret_key=key, retry_forever=True)
            engine = engines.enter_context(Engine(settings, metrics.meter(world.transport)))
            credentials = Credentials(write_key=WRITE_KEYS[name])
            services[name] = Service(engine, credentials, metrics=metrics, gather_s=0)
        shops = Shops(services)
        async with (
            shops.app.router.lifespan_context(shops.app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=shops.app), base_url="http://pslab"
            ) as client,
        ):
            yield client


async def status_when(
    client: httpx.AsyncClient, holds: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    with anyio.fail_after(10):
        while not holds(status := (await client.get("/status")).json()):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return dict(status)


def settled(status: dict[str, Any]) -> bool:
    return all(
        shop["pending"] == 0 and shop["drain"] == "idle" and shop["shop"]
        for shop in status["shops"].values()
    )


async def test_each_shop_takes_its_own_events_and_drains_them_into_its_own_shop(
    world: World, tmp_path: Path
) -> None:
    for shop in EMULATOR_SHOPS.values():
        await world.admin(
            "POST", "subscribers", {"shop": shop, "subscribers": [{"phone_number": PHONE}]}
        )
    async with serving_shops(world, tmp_path) as client:
        for name, key in (("alpha", "vip"), ("beta", "lapsed")):
            response = await client.post(
                f"/shops/{name}/v1/identify",
                content=json.dumps(event(key=key)),
                headers=basic(WRITE_KEYS[name]),
            )
            assert response.json()["accepted"] == 1, response.text
        wrong = await client.post(
            "/shops/beta/v1/batch",
            content=json.dumps({"batch": [event(key="intruder")]}),
            headers=basic(WRITE_KEYS["alpha"]),
        )
        status = await status_when(client, settled)

    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorised: the write key is not this service's"
    memberships = {}
    for name, shop in EMULATOR_SHOPS.items():
        state = await world.admin("GET", f"state?shop={shop}")
        memberships[name] = audiences_of(by_identity(state)[PHONE])
    assert memberships == {"alpha": ["vip"], "beta": ["lapsed"]}
    assert {name: shop["shop"] for name, shop in status["shops"].items()} == EMULATOR_SHOPS
    assert sorted([path.name async for path in anyio.Path(tmp_path).glob("*.sqlite")]) == [
        "alpha.sqlite",
        "beta.sqlite",
    ]


async def test_status_lists_the_shops_and_metrics_label_each_sample_with_its_shop(
    world: World, tmp_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})  # alpha's shop_a is the default shop
    async with serving_shops(world, tmp_path) as client:
        posted = await client.post(
            "/shops/alpha/", content=json.dumps(event()), headers=basic(WRITE_KEYS["alpha"])
        )
        assert posted.status_code == 200, posted.text
        status = await status_when(
            client, lambda s: settled(s) and s["shops"]["alpha"]["drain_rate_per_s"] > 0
        )
        alpha = (await client.get("/shops/alpha/status")).json()
        metrics = (await client.get("/metrics")).text
        health = (await client.get("/health")).json()
        texts = json.dumps(status) + json.dumps(alpha) + metrics

    assert health == {"status": "ok"}
    assert status["shops"]["alpha"]["status"] == "/shops/alpha/status"
    assert (status["pending"], status["shops"]["beta"]["pending"]) == (0, 0)
    assert alpha["since_start"]["applied"] == 1  # the single-shop document, this shop's
    assert 'pslab_changes_applied_total{shop="alpha"} 1.0' in metrics
    assert 'pslab_changes_applied_total{shop="beta"} 0.0' in metrics
    assert 'pslab_intake_events_total{outcome="accepted",shop="alpha"} 1.0' in metrics
    assert metrics.count("# TYPE pslab_pending_changes gauge") == 1  # one family, two shops
    secrets = [*KEYS.values(), *WRITE_KEYS.values()]
    assert [secret for secret in secrets if secret in texts] == []


async def test_the_start_names_each_shop_whose_key_postscript_refuses(
    world: World, tmp_path: Path
) -> None:
    keys = {**KEYS, "beta": "sk_not_betas_key"}
    with ExitStack() as engines:
        services = {}
        for name, key in keys.items():
            settings = world.settings(tmp_path / f"{name}.sqlite", secret_key=key)
            engine = engines.enter_context(Engine(settings, world.transport))
            services[name] = Service(engine, Credentials(write_key=WRITE_KEYS[name]))
        refused = await Shops(services).check_keys()

    assert list(refused) == ["beta"]
    assert isinstance(refused["beta"], AuthenticationError)


class Lines(logging.Handler):
    """Formats each record as it is emitted, as `log_to_stderr`'s handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLines())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


async def test_a_shops_log_records_carry_its_name(world: World, tmp_path: Path) -> None:
    logger, handler = logging.getLogger("pslab.serve"), Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    await world.seed({"phone_number": PHONE})
    try:
        async with serving_shops(world, tmp_path) as client:
            await client.post("/shops/beta/v1/track", content=b"{}", headers={})
            await client.post(
                "/shops/alpha/", content=json.dumps(event()), headers=basic(WRITE_KEYS["alpha"])
            )
            await status_when(client, settled)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    shop_of = {line["event"]: line.get("shop") for line in handler.lines}
    assert shop_of["intake_unauthorised"] == "beta"
    assert shop_of["drained"] == "alpha"
