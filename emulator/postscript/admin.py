"""The admin surface (docs/design.md §7) under `/_emulator`: no auth, no rate limit, no journal.

Calls about subscribers act on the default shop (the first of
`/_emulator/shops`) unless they name another: `"shop"` in a seed's body,
`?shop=` on `GET /_emulator/state`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.postscript import json_body, seed
from emulator.postscript.api import emulator_of
from emulator.postscript.emulator import Emulator
from emulator.postscript.errors import invalid
from emulator.postscript.faults import parse_settings
from emulator.postscript.shops import parse_tenancy
from emulator.postscript.store import Store

__all__ = ["routes"]


def _shop_store(emulator: Emulator, shop_id: str | None, loc: list[str | int]) -> Store:
    if shop_id is None:
        return emulator.store
    if emulator.tenancy.shop(shop_id) is None:
        known = ", ".join(s.id for s in emulator.tenancy.shops)
        raise invalid(loc, f"no shop {shop_id!r}; the shops are {known}", "value_error.shop")
    return emulator.store_of(shop_id)


async def reset(request: Request) -> Response:
    emulator_of(request).reset()
    return JSONResponse({"reset": True})


async def seed_subscribers(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    drafts = seed.seed_subscribers(body, emulator.config.default_region)
    store = _shop_store(emulator, seed.seed_shop(body), ["body", "shop"])
    created = store.create(drafts)
    return JSONResponse({"subscribers": [s.to_json() for s in created]})


async def state(request: Request) -> Response:
    emulator = emulator_of(request)
    store = _shop_store(emulator, request.query_params.get("shop"), ["query", "shop"])
    with store.lock:
        subscribers = [s.to_json() for s in store]
        events = store.events()
    return JSONResponse({"subscribers": subscribers, "events": events})


async def requests(request: Request) -> Response:
    return JSONResponse({"requests": emulator_of(request).journal.entries()})


def _faults_json(emulator: Emulator) -> dict[str, object]:
    return {**emulator.faults.settings.to_json(), "rate_limit_rps": emulator.rate_limiter.rps}


async def get_faults(request: Request) -> Response:
    return JSONResponse(_faults_json(emulator_of(request)))


async def put_faults(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    settings, rps = parse_settings(body, emulator.rate_limiter.rps)
    emulator.faults.configure(settings)
    emulator.rate_limiter.rps = rps
    return JSONResponse(_faults_json(emulator))


async def get_shops(request: Request) -> Response:
    return JSONResponse(emulator_of(request).tenancy.to_json())


async def put_shops(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    emulator.configure(parse_tenancy(body))
    return JSONResponse(emulator.tenancy.to_json())


routes = [
    Route("/_emulator/reset", reset, methods=["POST"]),
    Route("/_emulator/subscribers", seed_subscribers, methods=["POST"]),
    Route("/_emulator/state", state, methods=["GET"]),
    Route("/_emulator/requests", requests, methods=["GET"]),
    Route("/_emulator/faults", get_faults, methods=["GET"]),
    Route("/_emulator/faults", put_faults, methods=["PUT"]),
    Route("/_emulator/shops", get_shops, methods=["GET"]),
    Route("/_emulator/shops", put_shops, methods=["PUT"]),
]
