"""Handlers of the reference's Messages and Webhooks groups (docs/design/postscript-api.md#calls).

Messages: create-message, get-message-request, get-sent-message. Webhooks:
subscriptions CRUD, the signing token, example payloads and test deliveries.
Every call acts for the shop its credentials name, like those of `api`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript.errors import ResourceNotFound, invalid
from postscript_audience_lab.emulator.postscript.fidelity import choice_header
from postscript_audience_lab.emulator.postscript.model.messages import MessageDraft
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber
from postscript_audience_lab.emulator.postscript.model.webhooks import (
    EVENTS,
    WebhookRegistry,
    example_data,
    example_envelope,
)
from postscript_audience_lab.emulator.postscript.web import bodies
from postscript_audience_lab.emulator.postscript.web.api import (
    caller_of,
    emulator_of,
    read_body,
    refuse_query,
    shop_store,
)

__all__ = ["routes"]


def _shop_id(request: Request) -> str:
    shop = caller_of(request).shop
    assert shop is not None, "auth lets a partner without a shop token reach /me only"
    return shop.id


def _strict(request: Request) -> bool:
    return emulator_of(request).config.strict


# -- messages ---------------------------------------------------------------------


def _recipient(store: Store, draft: MessageDraft) -> Subscriber:
    """The subscriber a message is for: by `subscriber_id`, else by `phone` (a person
    pending double opt-in is found by phone); nobody is a 404, as "must exist" says."""
    with store.lock:
        if draft.subscriber_id is not None:
            return store.get(draft.subscriber_id)
        assert draft.phone_digits is not None
        found = store.find_by_phone_digits(draft.phone_digits, pending=True)
    if found is None:
        raise ResourceNotFound("subscriber")
    return found


async def create_message(request: Request) -> Response:
    refuse_query(request)
    emulator = emulator_of(request)
    draft = bodies.message(await read_body(request), strict=_strict(request))
    shop_id = _shop_id(request)
    store = shop_store(request)
    recipient = _recipient(store, draft)
    emulator.send_due_messages()
    made = emulator.messages_of(shop_id).submit(draft, recipient, store, emulator.clock.now())
    return JSONResponse(made.to_json(), status_code=202, headers=choice_header("message-statuses"))


async def get_message_request(request: Request) -> Response:
    refuse_query(request)
    emulator = emulator_of(request)
    emulator.send_due_messages()
    book = emulator.messages_of(_shop_id(request))
    found = book.request(request.path_params["message_request_id"])
    return JSONResponse(found.to_json(), headers=choice_header("message-statuses"))


async def get_sent_message(request: Request) -> Response:
    refuse_query(request)
    emulator = emulator_of(request)
    emulator.send_due_messages()
    found = emulator.messages_of(_shop_id(request)).sent(request.path_params["sent_message_id"])
    return JSONResponse(found.to_json())


# -- webhooks ---------------------------------------------------------------------


def _registry(request: Request) -> WebhookRegistry:
    return emulator_of(request).webhooks_of(_shop_id(request))


async def create_webhook(request: Request) -> Response:
    refuse_query(request)
    change = bodies.webhook_create(await read_body(request), strict=_strict(request))
    assert change.callback_url is not None
    assert change.event is not None
    made = _registry(request).create(change.callback_url, change.event, change.headers or {})
    return JSONResponse(made.to_json())


async def list_webhooks(request: Request) -> Response:
    refuse_query(request)
    return JSONResponse({"webhook_subscriptions": [s.to_json() for s in _registry(request).all()]})


async def get_webhook(request: Request) -> Response:
    refuse_query(request)
    return JSONResponse(_registry(request).get(request.path_params["webhook_id"]).to_json())


async def update_webhook(request: Request) -> Response:
    refuse_query(request)
    registry = _registry(request)
    webhook_id = request.path_params["webhook_id"]
    registry.get(webhook_id)  # an unknown id is a 404 even when the body is bad
    change = bodies.webhook_update(await read_body(request), strict=_strict(request))
    return JSONResponse(registry.update(webhook_id, change.callback_url, change.headers).to_json())


async def delete_webhook(request: Request) -> Response:
    refuse_query(request)
    _registry(request).delete(request.path_params["webhook_id"])
    return JSONResponse({})


async def signing_token(request: Request) -> Response:
    refuse_query(request)
    return JSONResponse({"token": _registry(request).token})


async def example_event(request: Request) -> Response:
    strict = _strict(request)
    names = [name for name, _ in request.query_params.multi_items()]
    if strict:
        extra = sorted(set(names) - {"event"})
        if extra:
            raise invalid(
                ["query", extra[0]], "this operation takes only event", "value_error.extra"
            )
    event = request.query_params.get("event")
    if event is None:
        raise invalid(["query", "event"], "event is required", "value_error.missing")
    if event not in EVENTS:
        raise invalid(["query", "event"], f"must be one of {', '.join(EVENTS)}", "value_error.enum")
    return JSONResponse(example_envelope(event, _shop_id(request)))


async def test_webhook(request: Request) -> Response:
    """A delivery of the event's example payload to each subscription to that event."""
    refuse_query(request)
    event = bodies.webhook_event(await read_body(request), strict=_strict(request))
    emulator = emulator_of(request)
    shop_id = _shop_id(request)
    emulator.emit(shop_id, event, example_data(event, shop_id))
    return JSONResponse({"message": "OK"}, status_code=202, headers=choice_header("webhook-test"))


routes = [
    Route("/api/v2/message_requests", create_message, methods=["POST"]),
    Route("/api/v2/message_requests/{message_request_id}", get_message_request, methods=["GET"]),
    Route("/api/v2/sent_messages/{sent_message_id}", get_sent_message, methods=["GET"]),
    Route("/api/v2/webhooks", create_webhook, methods=["POST"]),
    Route("/api/v2/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/v2/webhooks/token", signing_token, methods=["GET"]),
    Route("/api/v2/webhooks/example", example_event, methods=["GET"]),
    Route("/api/v2/webhooks/test", test_webhook, methods=["POST"]),
    Route("/api/v2/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
    Route("/api/v2/webhooks/{webhook_id}", update_webhook, methods=["PATCH"]),
    Route("/api/v2/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
]
