"""The admin surface (docs/design/emulator.md) under `/_emulator`: no auth, no rate limit, no
journal.

Calls about subscribers act on the default shop (the first of
`/_emulator/shops`) unless they name another: `"shop"` in a seed's body,
`?shop=` on `GET /_emulator/state`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript import json_body
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.errors import invalid
from postscript_audience_lab.emulator.postscript.model import seed
from postscript_audience_lab.emulator.postscript.model.fields import FieldReader
from postscript_audience_lab.emulator.postscript.model.lifecycle import receive_text
from postscript_audience_lab.emulator.postscript.model.shops import parse_tenancy
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import format_time
from postscript_audience_lab.emulator.postscript.web.api import emulator_of
from postscript_audience_lab.emulator.postscript.web.faults import parse_settings

__all__ = ["MAX_ADVANCE_S", "routes"]

MAX_ADVANCE_S = 10 * 366 * 86_400  # ten years: beyond it, dates leave the calendar


def _shop_id(emulator: Emulator, shop_id: str | None, loc: list[str | int]) -> str:
    if shop_id is None:
        return emulator.tenancy.default_shop.id
    if emulator.tenancy.shop(shop_id) is None:
        known = ", ".join(s.id for s in emulator.tenancy.shops)
        raise invalid(loc, f"no shop {shop_id!r}; the shops are {known}", "value_error.shop")
    return shop_id


def _shop_store(emulator: Emulator, shop_id: str | None, loc: list[str | int]) -> Store:
    return emulator.store_of(_shop_id(emulator, shop_id, loc))


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
        subscribers = [s.to_record() for s in store]
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


async def add_keywords(request: Request) -> Response:
    """`{"keywords":[{"keyword","id"?}],"shop"?}`: add keywords to a shop
    (docs/design/emulator-choices.md#keywords); answers the added ones as get-keywords shows
    them."""
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    extra = sorted(set(body) - {"keywords", "shop"})
    if extra:
        raise invalid(
            ["body", extra[0]],
            "unknown field; give keywords and, optionally, shop",
            "value_error.extra",
        )
    shop = body.get("shop")
    if shop is not None and not isinstance(shop, str):
        raise invalid(["body", "shop"], "must be a shop's id", "value_error.shop")
    shop_id = _shop_id(emulator, shop, ["body", "shop"])
    added = emulator.add_keywords(shop_id, body.get("keywords"))
    store = emulator.store_of(shop_id)
    return JSONResponse({"keywords": [k.to_json(store.keyword_uses(k.id)) for k in added]})


async def inbound(request: Request) -> Response:
    """A text from a person's phone to the shop: `{"phone_number","body"[,"shop"]}`."""
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    fields = FieldReader(body, ["body"], ("phone_number", "body", "shop"), strict=True)
    phone = fields.phone("phone_number", emulator.config.default_region, required=True)
    text = fields.string("body", required=True)
    shop = fields.string("shop")
    fields.done()
    assert phone is not None
    assert text is not None
    shop_id = _shop_id(emulator, shop, ["body", "shop"])
    return JSONResponse(receive_text(emulator, shop_id, phone, text).to_json())


async def messages(request: Request) -> Response:
    """What was (or would have been) texted: every message request and sent message."""
    emulator = emulator_of(request)
    shop_id = _shop_id(emulator, request.query_params.get("shop"), ["query", "shop"])
    emulator.send_due_messages()
    book = emulator.messages_of(shop_id)
    return JSONResponse(
        {
            "message_requests": [r.to_record() for r in book.requests()],
            "sent_messages": [m.to_record() for m in book.sent_messages()],
        }
    )


def _deliveries_json(emulator: Emulator, shop_id: str | None) -> dict[str, object]:
    return {"deliveries": [d.to_json() for d in emulator.dispatcher.deliveries(shop_id)]}


async def deliveries(request: Request) -> Response:
    """The webhook delivery journal: every delivery, with every attempt and its answer."""
    emulator = emulator_of(request)
    shop = request.query_params.get("shop")
    shop_id = None if shop is None else _shop_id(emulator, shop, ["query", "shop"])
    return JSONResponse(_deliveries_json(emulator, shop_id))


async def flush_deliveries(request: Request) -> Response:
    """Send every pending delivery now, skipping the backoff, and answer once all are done."""
    emulator = emulator_of(request)
    settled = await run_in_threadpool(emulator.dispatcher.flush)
    return JSONResponse({"settled": settled, **_deliveries_json(emulator, None)})


def _clock_json(emulator: Emulator) -> dict[str, object]:
    return {"now": format_time(emulator.clock.now()), "offset_s": emulator.clock.offset_s}


async def get_clock(request: Request) -> Response:
    return JSONResponse(_clock_json(emulator_of(request)))


async def advance_clock(request: Request) -> Response:
    """`{"advance_s": seconds}`: move the clock on; scheduled messages and webhook retries
    now due are sent."""
    emulator = emulator_of(request)
    body = await json_body.read_object(request, json_body.ADMIN_BODY_LIMIT)
    seconds = body.get("advance_s")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_ADVANCE_S
    ):
        raise invalid(
            ["body", "advance_s"],
            f"must be a number of seconds from 0 to {MAX_ADVANCE_S:,}",
            "value_error.number",
        )
    extra = sorted(set(body) - {"advance_s"})
    if extra:
        raise invalid(["body", extra[0]], "unknown field; give advance_s", "value_error.extra")
    emulator.clock.advance(float(seconds))
    emulator.send_due_messages()
    # Webhook retries now due are attempted before the answer, so a test reads their outcome.
    await run_in_threadpool(emulator.dispatcher.catch_up)
    return JSONResponse(_clock_json(emulator))


routes = [
    Route("/_emulator/reset", reset, methods=["POST"]),
    Route("/_emulator/subscribers", seed_subscribers, methods=["POST"]),
    Route("/_emulator/state", state, methods=["GET"]),
    Route("/_emulator/requests", requests, methods=["GET"]),
    Route("/_emulator/faults", get_faults, methods=["GET"]),
    Route("/_emulator/faults", put_faults, methods=["PUT"]),
    Route("/_emulator/shops", get_shops, methods=["GET"]),
    Route("/_emulator/shops", put_shops, methods=["PUT"]),
    Route("/_emulator/keywords", add_keywords, methods=["POST"]),
    Route("/_emulator/inbound", inbound, methods=["POST"]),
    Route("/_emulator/messages", messages, methods=["GET"]),
    Route("/_emulator/webhooks/deliveries", deliveries, methods=["GET"]),
    Route("/_emulator/webhooks/flush", flush_deliveries, methods=["POST"]),
    Route("/_emulator/clock", get_clock, methods=["GET"]),
    Route("/_emulator/clock", advance_clock, methods=["POST"]),
]
