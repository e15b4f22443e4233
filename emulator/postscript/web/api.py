"""Handlers of the emulated Postscript API (docs/design/postscript-api.md), under `/api/v2`.

Each call acts for the shop its credentials name (`auth.Caller`), on that
shop's store. The operations are the published reference's subscriber,
event, keyword, compliance and identity groups, plus `POST /subscribers`
(an emulator choice, docs/design/postscript-api.md#newer-evidence).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript import json_body
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.errors import (
    InvalidInput,
    ResourceNotFound,
    problem,
)
from postscript_audience_lab.emulator.postscript.fidelity import choice_header
from postscript_audience_lab.emulator.postscript.model.keywords import Keyword, find_keyword
from postscript_audience_lab.emulator.postscript.model.lifecycle import report_opt_outs
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.web import bodies
from postscript_audience_lab.emulator.postscript.web.auth import Caller
from postscript_audience_lab.emulator.postscript.web.query import parse_query
from postscript_audience_lab.emulator.postscript.web.targets import (
    compliance_subscribers,
    event_subscriber,
)

__all__ = ["caller_of", "emulator_of", "read_body", "refuse_query", "routes", "shop_store"]


def emulator_of(request: Request) -> Emulator:
    return cast(Emulator, request.app.state.emulator)


def caller_of(request: Request) -> Caller:
    return cast(Caller, request.scope["pslab.caller"])


def shop_store(request: Request) -> Store:
    shop = caller_of(request).shop
    assert shop is not None, "auth lets a partner without a shop token reach /me only"
    return emulator_of(request).store_of(shop.id)


def _shop_keywords(request: Request) -> tuple[Keyword, ...]:
    shop = caller_of(request).shop
    assert shop is not None, "auth lets a partner without a shop token reach /me only"
    return shop.keywords


def _strict(request: Request) -> bool:
    return emulator_of(request).config.strict


def _query(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)


def refuse_query(request: Request) -> None:
    """Operations that document no query parameter: strict, any given is a 400."""
    if _strict(request):
        unknown = sorted({name for name, _ in _query(request)})
        if unknown:
            raise InvalidInput(
                [
                    problem(
                        ["query", name],
                        "this operation takes no query parameters",
                        "value_error.extra",
                    )
                    for name in unknown
                ]
            )


async def read_body(request: Request) -> dict[str, Any]:
    return await json_body.read_object(request, json_body.API_BODY_LIMIT)


async def me(request: Request) -> Response:
    refuse_query(request)
    caller = caller_of(request)
    resource = caller.shop or caller.partner
    assert resource is not None
    answer = {
        "resource_id": resource.id,
        "resource_name": resource.name,
        "resource_type": "shop" if caller.shop else "partner",
    }
    return JSONResponse(answer, headers=choice_header("auth-partner") if caller.partner else None)


async def list_subscribers(request: Request) -> Response:
    # the hot path of lookups: the emulator is looked up once, not once per helper
    emulator = emulator_of(request)
    config = emulator.config
    query = parse_query(_query(request), config.default_region, strict=config.strict)
    shop = caller_of(request).shop
    assert shop is not None, "auth lets a partner without a shop token reach /me only"
    page, total_pages = query.run(emulator.store_of(shop.id), config.page_size)
    return JSONResponse(
        {
            "page_info": {"page": query.page, "total_pages": total_pages},
            "subscribers": [s.to_json() for s in page],
        }
    )


async def get_subscriber(request: Request) -> Response:
    refuse_query(request)
    return JSONResponse(shop_store(request).get(request.path_params["subscriber_id"]).to_json())


async def create_subscriber(request: Request) -> Response:
    refuse_query(request)
    emulator = emulator_of(request)
    body = await read_body(request)
    draft = bodies.api_subscriber(
        body, emulator.config.default_region, _shop_keywords(request), strict=_strict(request)
    )
    (subscriber,) = shop_store(request).create([draft])
    return JSONResponse(
        subscriber.to_json(), status_code=201, headers=choice_header("create-subscriber")
    )


async def patch_subscriber(request: Request) -> Response:
    refuse_query(request)
    store = shop_store(request)
    subscriber_id = request.path_params["subscriber_id"]
    store.get(subscriber_id)  # a missing subscriber is a 404 even when the body is bad
    patch = bodies.subscriber_patch(await read_body(request), strict=_strict(request))
    return JSONResponse(store.patch(subscriber_id, patch).to_json())


async def create_event(request: Request) -> Response:
    refuse_query(request)
    emulator = emulator_of(request)
    body = await read_body(request)
    strict = _strict(request)
    identifiers = bodies.event(body, emulator.config.default_region, strict=strict)
    store = shop_store(request)
    if identifiers is None:  # names no subscriber: only `type` is required (lenient only)
        return JSONResponse(
            {"event_ids": [store.record_event(body, None)]},
            status_code=202,
            headers=choice_header("event-without-subscriber"),
        )
    recipient = event_subscriber(store, identifiers, strict=strict)  # or 404: nothing stored
    return JSONResponse({"event_ids": [store.record_event(body, recipient)]}, status_code=202)


async def unsubscribe(request: Request) -> Response:
    refuse_query(request)
    emulator = emulator_of(request)
    body = await read_body(request)
    identifiers = bodies.unsubscribe(body, emulator.config.default_region, strict=_strict(request))
    store = shop_store(request)
    opted_out = [s for s in compliance_subscribers(store, identifiers) if store.unsubscribe(s)]
    report_opt_outs(emulator, store.shop, opted_out, "compliance_unsubscribe")
    return JSONResponse({"message": "OK"}, status_code=202)


async def redact(request: Request) -> Response:
    refuse_query(request)
    region = emulator_of(request).config.default_region
    identifiers = bodies.redact(await read_body(request), region, strict=_strict(request))
    store = shop_store(request)
    named = compliance_subscribers(store, identifiers)
    were_in = [
        s for s in named if not s.pending and (s.promotional_can_send or s.transactional_can_send)
    ]
    store.redact(named, region)
    # "also unsubscribe the subscriber if they have an active subscription": an opt-out
    report_opt_outs(emulator_of(request), store.shop, were_in, "compliance_redact")
    return JSONResponse({"message": "OK"}, status_code=202)


def _keyword_json(request: Request, keyword: Keyword) -> dict[str, Any]:
    return keyword.to_json(shop_store(request).keyword_uses(keyword.id))


async def list_keywords(request: Request) -> Response:
    refuse_query(request)
    keywords = _shop_keywords(request)
    return JSONResponse({"keywords": [_keyword_json(request, k) for k in keywords]})


async def get_keyword(request: Request) -> Response:
    refuse_query(request)
    found = find_keyword(_shop_keywords(request), keyword_id=request.path_params["keyword_id"])
    if found is None:
        raise ResourceNotFound("keyword", documented=True)
    return JSONResponse(_keyword_json(request, found))


routes = [
    Route("/api/v2/me", me, methods=["GET"]),
    Route("/api/v2/subscribers", list_subscribers, methods=["GET"]),
    Route("/api/v2/subscribers", create_subscriber, methods=["POST"]),
    Route("/api/v2/subscribers/{subscriber_id}", get_subscriber, methods=["GET"]),
    Route("/api/v2/subscribers/{subscriber_id}", patch_subscriber, methods=["PATCH"]),
    Route("/api/v2/events", create_event, methods=["POST"]),
    Route("/api/v2/compliance/unsubscribe", unsubscribe, methods=["PATCH"]),
    Route("/api/v2/compliance/redact", redact, methods=["PATCH"]),
    Route("/api/v2/keywords", list_keywords, methods=["GET"]),
    Route("/api/v2/keywords/{keyword_id}", get_keyword, methods=["GET"]),
]
