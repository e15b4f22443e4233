"""The admin surface (docs/design.md §7) under `/_emulator`: no auth, no rate limit, no journal."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.postscript import bodies, json_body
from emulator.postscript.api import emulator_of
from emulator.postscript.emulator import Emulator
from emulator.postscript.faults import parse_settings

__all__ = ["routes"]


async def reset(request: Request) -> Response:
    emulator_of(request).reset()
    return JSONResponse({"reset": True})


async def seed_subscribers(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    drafts = bodies.seed_subscribers(body, emulator.config.default_region)
    created = emulator.store.create(drafts)
    return JSONResponse({"subscribers": [s.to_json() for s in created]})


async def state(request: Request) -> Response:
    store = emulator_of(request).store
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


routes = [
    Route("/_emulator/reset", reset, methods=["POST"]),
    Route("/_emulator/subscribers", seed_subscribers, methods=["POST"]),
    Route("/_emulator/state", state, methods=["GET"]),
    Route("/_emulator/requests", requests, methods=["GET"]),
    Route("/_emulator/faults", get_faults, methods=["GET"]),
    Route("/_emulator/faults", put_faults, methods=["PUT"]),
]
