"""The Messages and Webhooks operations' part of `/openapi.json` (see `openapi`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from postscript_audience_lab.emulator.postscript.model.messages import CATEGORIES, StatusCode
from postscript_audience_lab.emulator.postscript.model.webhooks import (
    EVENTS,
    MAX_CUSTOM_HEADERS,
    MAX_URL_LENGTH,
)
from postscript_audience_lab.emulator.postscript.openapi.schemas import nullable, ref, request_body

__all__ = ["messaging_paths", "messaging_schemas"]

Answers = Callable[..., dict[str, Any]]

_SENT_MESSAGE = {
    "type": "object",
    "required": [
        "body",
        "created_at",
        "credits_used",
        "id",
        "media_url",
        "phone",
        "shop_id",
        "subscriber_id",
    ],
    "additionalProperties": False,
    "properties": {
        "body": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "credits_used": {"type": "integer", "minimum": 1},
        "id": {"type": "string", "pattern": "^sm_"},
        "media_url": nullable({"type": "string"}),
        "phone": {"type": "string"},
        "shop_id": {"type": "string"},
        "subscriber_id": {"type": "string"},
    },
}

_MESSAGE_REQUEST = {
    "type": "object",
    "required": [
        "body",
        "category",
        "created_at",
        "id",
        "phone",
        "scheduled_at",
        "sent_message",
        "status",
        "status_code",
        "subscriber_id",
        "updated_at",
    ],
    "additionalProperties": False,
    "properties": {
        "body": {"type": "string"},
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "created_at": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "pattern": "^mr_"},
        "phone": nullable({"type": "string"}),
        "scheduled_at": nullable({"type": "string", "format": "date-time"}),
        "sent_message": {**ref("SentMessage"), "nullable": True},
        "status": {"type": "string", "enum": ["scheduled", "sent", "failed"]},
        "status_code": {"type": "integer", "enum": [int(code) for code in StatusCode]},
        "subscriber_id": nullable({"type": "string"}),
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

_HEADERS = {
    "type": "object",
    "maxProperties": MAX_CUSTOM_HEADERS,
    "additionalProperties": {"type": "string"},
    "description": "Sent as headers on every delivery; Postscript's own cannot be replaced.",
}

_WEBHOOK = {
    "type": "object",
    "required": ["callback_url", "created_at", "event", "headers", "id", "updated_at"],
    "additionalProperties": False,
    "properties": {
        "callback_url": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "event": {"type": "string", "enum": list(EVENTS)},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "id": {"type": "string", "format": "uuid"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

_ENVELOPE = {
    "type": "object",
    "required": ["webhook_id", "resource_type", "resource_id", "event_time", "event", "event_data"],
    "properties": {
        "webhook_id": {"type": "string"},
        "resource_type": {"type": "string"},
        "resource_id": {"type": "string"},
        "event_time": {"type": "string"},
        "event": {"type": "string", "enum": list(EVENTS)},
        "event_data": {
            "type": "object",
            "description": "shop.incoming_message: id, subscriber_id, shop_id, is_opt_out, "
            "shopify_customer_id, from_number, created_at, body (documented); other events: "
            "docs/design/emulator-choices.md#webhook-payloads.",
        },
    },
}


def messaging_schemas() -> dict[str, Any]:
    return {
        "SentMessage": _SENT_MESSAGE,
        "MessageRequest": _MESSAGE_REQUEST,
        "WebhookSubscription": _WEBHOOK,
        "WebhookEnvelope": _ENVELOPE,
    }


def _object(required: list[str], properties: dict[str, Any], strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if strict:
        schema["additionalProperties"] = False
    return schema


def _message_paths(
    strict: bool, answers: Answers, parameters: list[dict[str, Any]], with_id: list[Any]
) -> dict[str, Any]:
    text = nullable({"type": "string"})
    create = _object(
        ["body"],
        {
            "subscriber_id": text,
            "phone": nullable({"type": "string", "description": "The subscriber's phone."}),
            "country": nullable({"type": "string", "pattern": "^[A-Za-z]{2}$"}),
            "body": {"type": "string", "minLength": 1, "pattern": r"\S"},
            "category": nullable({"type": "string", "enum": list(CATEGORIES)}),
            "scheduled_at": nullable({"type": "string", "format": "date-time"}),
            "media_url": nullable({"type": "string", "pattern": r"^https?://\S+$"}),
        },
        strict,
    )
    create["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("subscriber_id", "phone")
    ]
    strict_400 = ("400",) if strict else ()
    return {
        "/api/v2/message_requests": {
            "post": {
                "operationId": "create-message",
                "tags": ["Messages"],
                "summary": "Send (or schedule) a message to one existing subscriber.",
                "parameters": parameters,
                "requestBody": request_body(create),
                "responses": answers("202", ref("MessageRequest"), "400", "404", "413", "415"),
            }
        },
        "/api/v2/message_requests/{id}": {
            "get": {
                "operationId": "get-message-request",
                "tags": ["Messages"],
                "parameters": with_id,
                "responses": answers("200", ref("MessageRequest"), "404", *strict_400),
            }
        },
        "/api/v2/sent_messages/{id}": {
            "get": {
                "operationId": "get-sent-message",
                "tags": ["Messages"],
                "parameters": with_id,
                "responses": answers("200", ref("SentMessage"), "404", *strict_400),
            }
        },
    }


def _webhook_paths(
    strict: bool, answers: Answers, parameters: list[dict[str, Any]], with_id: list[Any]
) -> dict[str, Any]:
    url = {"type": "string", "maxLength": MAX_URL_LENGTH, "pattern": r"^https?://\S+$"}
    event = {"type": "string", "enum": list(EVENTS)}
    create = _object(
        ["callback_url", "event"],
        {"callback_url": url, "event": event, "headers": nullable(_HEADERS)},
        strict,
    )
    update = _object([], {"callback_url": nullable(url), "headers": nullable(_HEADERS)}, strict)
    strict_400 = ("400",) if strict else ()
    listing = {
        "type": "object",
        "required": ["webhook_subscriptions"],
        "properties": {
            "webhook_subscriptions": {"type": "array", "items": ref("WebhookSubscription")}
        },
    }
    accepted = {"type": "object", "required": ["message"], "properties": {"message": {}}}
    example_query = {"name": "event", "in": "query", "required": True, "schema": event}

    def operation(operation_id: str, **fields: Any) -> dict[str, Any]:
        return {"operationId": operation_id, "tags": ["Webhooks"], **fields}

    return {
        "/api/v2/webhooks": {
            "post": operation(
                "create-webhook-subscription",
                summary="Subscribe a callback URL (HTTPS, or HTTP on loopback) to one event.",
                parameters=parameters,
                requestBody=request_body(create),
                responses=answers("200", ref("WebhookSubscription"), "400", "413", "415"),
            ),
            "get": operation(
                "list-webhook-subscriptions",
                parameters=parameters,
                responses=answers("200", listing, *strict_400),
            ),
        },
        "/api/v2/webhooks/{id}": {
            "get": operation(
                "get-webhook-subscription",
                parameters=with_id,
                responses=answers("200", ref("WebhookSubscription"), "404", *strict_400),
            ),
            "patch": operation(
                "update-webhook-subscription",
                summary="Change the callback URL and/or replace the custom headers.",
                parameters=with_id,
                requestBody=request_body(update),
                responses=answers("200", ref("WebhookSubscription"), "400", "404", "413", "415"),
            ),
            "delete": operation(
                "delete-webhook-subscription",
                parameters=with_id,
                responses=answers("200", {"type": "object"}, "404", *strict_400),
            ),
        },
        "/api/v2/webhooks/token": {
            "get": operation(
                "get-webhook-signing-token",
                summary="The token every delivery carries in its Postscript-Signature header.",
                parameters=parameters,
                responses=answers(
                    "200",
                    {
                        "type": "object",
                        "required": ["token"],
                        "properties": {"token": {"type": "string"}},
                    },
                    *strict_400,
                ),
            )
        },
        "/api/v2/webhooks/example": {
            "get": operation(
                "example-event",
                summary="A representative delivery of the event.",
                parameters=[example_query, *parameters],
                responses=answers("200", ref("WebhookEnvelope"), "400"),
            )
        },
        "/api/v2/webhooks/test": {
            "post": operation(
                "test-shop-webhook",
                summary="Deliver the event's example to every subscription to that event.",
                parameters=parameters,
                requestBody=request_body(_object(["event"], {"event": event}, strict)),
                responses=answers("202", accepted, "400", "413", "415"),
            )
        },
    }


def messaging_paths(
    strict: bool, answers: Answers, parameters: list[dict[str, Any]], with_id: list[Any]
) -> dict[str, Any]:
    """`answers` builds an operation's responses; `parameters` are every call's (the shop
    token), `with_id` those of a call on one resource."""
    return {
        **_message_paths(strict, answers, parameters, with_id),
        **_webhook_paths(strict, answers, parameters, with_id),
    }
