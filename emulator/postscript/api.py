"""Handlers of the emulated Postscript API (docs/design.md §2), under `/api/v2`."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.postscript import bodies, json_body
from emulator.postscript.emulator import Emulator
from emulator.postscript.errors import ResourceNotFound
from emulator.postscript.query import parse_query
from emulator.postscript.subscriber import Subscriber

__all__: list[str] = []

# Postscript's docs show a string id like `shop_1234567abcde` for the key's shop.
ME = {
    "resource_id": "shop_pslab0emulator",
    "resource_name": "pslab emulator",
    "resource_type": "shop",
}


def emulator_of(request: Request) -> Emulator:
    return cast(Emulator, request.app.state.emulator)


async def _body(request: Request) -> dict[str, Any]:
    return await json_body.read_object(request, json_body.API_BODY_LIMIT)


async def me(request: Request) -> Response:
    return JSONResponse(ME)


async def list_subscribers(request: Request) -> Response:
    emulator = emulator_of(request)
    params = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
    query = parse_query(params, emulator.config.default_region)
    page, total_pages = query.run(emulator.store, emulator.config.page_size)
    return JSONResponse(
        {
            "page_info": {"page": query.page, "total_pages": total_pages},
            "subscribers": [s.to_json() for s in page],
        }
    )


async def get_subscriber(request: Request) -> Response:
    store = emulator_of(request).store
    return JSONResponse(store.get(request.path_params["subscriber_id"]).to_json())


async def create_subscriber(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await _body(request)
    draft = bodies.api_subscriber(body, emulator.config.default_region, emulator.keywords)
    (subscriber,) = emulator.store.create([draft])
    return JSONResponse(subscriber.to_json(), status_code=201)


async def patch_subscriber(request: Request) -> Response:
    emulator = emulator_of(request)
    subscriber_id = request.path_params["subscriber_id"]
    emulator.store.get(subscriber_id)  # a missing subscriber is a 404 even when the body is bad
    patch = bodies.subscriber_patch(await _body(request))
    return JSONResponse(emulator.store.patch(subscriber_id, patch).to_json())


def _target(emulator: Emulator, target: bodies.EventTarget) -> Subscriber:
    store = emulator.store
    if target.kind == "subscriber_id":
        return store.get(target.value)
    if target.kind == "phone":
        found = store.find_by_phone_digits(target.value.lstrip("+"))
        if found is None:
            raise ResourceNotFound(f"No subscriber with phone number {target.value}")
        return found
    matches = store.find_by_email(target.value)
    if not matches:
        raise ResourceNotFound("No subscriber with this email")
    return matches[0]


async def create_event(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await _body(request)
    target = bodies.event(body, emulator.config.default_region)
    _target(emulator, target)  # an event for nobody is a 404 and is not stored
    event_id = emulator.store.record_event(body)
    return JSONResponse({"event_ids": [event_id]}, status_code=202)


async def unsubscribe(request: Request) -> Response:
    emulator = emulator_of(request)
    target = bodies.unsubscribe(await _body(request), emulator.config.default_region)
    emulator.store.unsubscribe(_target(emulator, target))
    return JSONResponse({"message": "OK"}, status_code=202)


async def keywords(request: Request) -> Response:
    return JSONResponse({"keywords": [k.to_json() for k in emulator_of(request).keywords]})


routes = [
    Route("/api/v2/me", me, methods=["GET"]),
    Route("/api/v2/subscribers", list_subscribers, methods=["GET"]),
    Route("/api/v2/subscribers", create_subscriber, methods=["POST"]),
    Route("/api/v2/subscribers/{subscriber_id}", get_subscriber, methods=["GET"]),
    Route("/api/v2/subscribers/{subscriber_id}", patch_subscriber, methods=["PATCH"]),
    Route("/api/v2/events", create_event, methods=["POST"]),
    Route("/api/v2/compliance/unsubscribe", unsubscribe, methods=["PATCH"]),
    Route("/api/v2/keywords", keywords, methods=["GET"]),
]
