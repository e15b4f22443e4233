"""The `/_emulator` admin surface's part of `/openapi.json` (docs/design/emulator.md)."""

from __future__ import annotations

from typing import Any

from postscript_audience_lab.emulator.postscript.json_body import ADMIN_BODY_LIMIT
from postscript_audience_lab.emulator.postscript.model.keywords import MAX_KEYWORD_LENGTH
from postscript_audience_lab.emulator.postscript.model.seed import SEED_FIELDS, SEED_ID
from postscript_audience_lab.emulator.postscript.model.shops import OPERATION_GROUPS
from postscript_audience_lab.emulator.postscript.openapi.schemas import (
    JSON,
    json_content,
    nullable,
    ref,
    request_body,
)
from postscript_audience_lab.emulator.postscript.web.faults import MAX_RATE_LIMIT_RPS, MAX_WAIT_MS

__all__ = ["admin_paths"]

_ID_PATTERN = f"^{SEED_ID.pattern}$"


def _admin(summary: str, ok: dict[str, Any], body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["emulator admin"],
        "summary": summary,
        "security": [],
        "responses": {"200": {"description": "OK", "content": {JSON: {"schema": ok}}}},
    }
    if body is not None:
        operation["requestBody"] = request_body(body)
        operation["responses"].update(
            {
                "400": json_content(ref("ValidationErrors"), "Bad input"),
                "413": json_content(ref("ErrorCode"), f"A body over {ADMIN_BODY_LIMIT:,} bytes"),
                "415": json_content(ref("ErrorCode"), "A Content-Type other than JSON"),
            }
        )
    return operation


_FAULTS = {
    "type": "object",
    "properties": {
        "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "error_statuses": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "integer", "minimum": 400, "maximum": 599},
        },
        "latency_ms": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_MS},
        },
        "timeout_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "timeout_ms": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_MS},
        "rate_limit_rps": {"type": "number", "minimum": 0, "maximum": MAX_RATE_LIMIT_RPS},
        "seed": nullable({"type": "integer"}),
    },
}

_FORBIDDEN = {"type": "array", "items": {"type": "string", "enum": list(OPERATION_GROUPS)}}

_KEYWORD_ITEMS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["keyword"],
        "additionalProperties": False,
        "properties": {
            "keyword": {"type": "string", "minLength": 1, "maxLength": MAX_KEYWORD_LENGTH},
            "id": {"type": "string", "pattern": _ID_PATTERN},
        },
    },
}

_SHOPS = {
    "type": "object",
    "required": ["shops"],
    "additionalProperties": False,
    "properties": {
        "shops": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "secret_key"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": _ID_PATTERN},
                    "name": {"type": "string", "minLength": 1},
                    "secret_key": {"type": "string", "minLength": 1},
                    "public_key": nullable({"type": "string", "pattern": "^pk_"}),
                    "forbidden": _FORBIDDEN,
                    "keywords": _KEYWORD_ITEMS,
                },
            },
        },
        "partners": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "key"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": _ID_PATTERN},
                    "name": {"type": "string", "minLength": 1},
                    "key": {"type": "string", "minLength": 1},
                    "forbidden": _FORBIDDEN,
                },
            },
        },
    },
}


def admin_paths() -> dict[str, Any]:
    subscribers = {"type": "array", "items": ref("Subscriber")}
    seed_item = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{name: {} for name in SEED_FIELDS},
            "id": {"type": "string", "pattern": _ID_PATTERN},
            "created_at": {"type": "string", "format": "date-time"},
        },
    }
    shop_parameter = {
        "name": "shop",
        "in": "query",
        "required": False,
        "description": "A shop's id (default: the first shop).",
        "schema": {"type": "string"},
    }
    stored = {
        "type": "array",
        "items": {
            "type": "object",
            "description": "A Subscriber; `pending: true` while it awaits its confirming text.",
        },
    }
    state = _admin(
        "Every subscriber (pending ones too) and every accepted event of one shop.",
        {
            "type": "object",
            "properties": {
                "subscribers": stored,
                "events": {"type": "array", "items": {"type": "object"}},
            },
        },
    )
    state["parameters"] = [shop_parameter]
    return {
        **_conversation_paths(shop_parameter),
        "/_emulator/reset": {
            "post": _admin(
                "Forget every shop's subscribers and events, and the request journal.",
                {"type": "object"},
            )
        },
        "/_emulator/subscribers": {
            "post": _admin(
                "Seed subscribers (confirmed, can_send true unless given) into a shop.",
                {"type": "object", "properties": {"subscribers": subscribers}},
                {
                    "type": "object",
                    "required": ["subscribers"],
                    "properties": {
                        "subscribers": {"type": "array", "items": seed_item},
                        "shop": {"type": "string", "pattern": _ID_PATTERN},
                    },
                },
            )
        },
        "/_emulator/keywords": {
            "post": _admin(
                "Add keywords to a shop (JOIN and VIP are there already); answers the added ones.",
                {
                    "type": "object",
                    "properties": {"keywords": {"type": "array", "items": ref("Keyword")}},
                },
                {
                    "type": "object",
                    "required": ["keywords"],
                    "additionalProperties": False,
                    "properties": {
                        "keywords": {**_KEYWORD_ITEMS, "minItems": 1},
                        "shop": {"type": "string", "pattern": _ID_PATTERN},
                    },
                },
            )
        },
        "/_emulator/state": {"get": state},
        "/_emulator/requests": {
            "get": _admin(
                "The latest API requests (method, path, query, status, time, duration_ms, fault).",
                {
                    "type": "object",
                    "properties": {"requests": {"type": "array", "items": {"type": "object"}}},
                },
            )
        },
        "/_emulator/faults": {
            "get": _admin("The current fault setting.", _FAULTS),
            "put": _admin(
                "Replace the fault setting; an omitted rate_limit_rps is kept.", _FAULTS, _FAULTS
            ),
        },
        "/_emulator/shops": {
            "get": _admin("The shops and partners the emulator answers for.", _SHOPS),
            "put": _admin(
                "Replace the shops and partners; data stays under shop ids.", _SHOPS, _SHOPS
            ),
        },
    }


_LIST_OF_OBJECTS = {"type": "array", "items": {"type": "object"}}


def _conversation_paths(shop_parameter: dict[str, Any]) -> dict[str, Any]:
    """The person's side (inbound texts), what was texted, webhook deliveries, the clock."""
    inbound_body = {
        "type": "object",
        "required": ["phone_number", "body"],
        "additionalProperties": False,
        "properties": {
            "phone_number": {"type": "string"},
            "body": {"type": "string"},
            "shop": {"type": "string", "pattern": _ID_PATTERN},
        },
    }
    inbound_answer = {
        "type": "object",
        "properties": {
            "outcome": {
                "type": "string",
                "enum": ["confirmed", "opted_out", "signup_cancelled", "message"],
            },
            "subscriber": nullable({"type": "object"}),
            "events": {"type": "array", "items": {"type": "string"}},
        },
    }
    messages = _admin(
        "Every message request and every sent message (what the phones got) of one shop.",
        {
            "type": "object",
            "properties": {
                "message_requests": _LIST_OF_OBJECTS,
                "sent_messages": _LIST_OF_OBJECTS,
            },
        },
    )
    messages["parameters"] = [shop_parameter]
    deliveries = _admin(
        "The webhook delivery journal: each delivery, its payload, state and attempts.",
        {"type": "object", "properties": {"deliveries": _LIST_OF_OBJECTS}},
    )
    deliveries["parameters"] = [{**shop_parameter, "description": "A shop's id (default: all)."}]
    clock = {
        "type": "object",
        "properties": {"now": {"type": "string", "format": "date-time"}, "offset_s": {}},
    }
    advance = {
        "type": "object",
        "required": ["advance_s"],
        "additionalProperties": False,
        "properties": {"advance_s": {"type": "number", "minimum": 0}},
    }
    return {
        "/_emulator/inbound": {
            "post": _admin(
                "A text from a phone: YES confirms a pending subscriber, STOP opts out, "
                "anything else is an incoming message.",
                inbound_answer,
                inbound_body,
            )
        },
        "/_emulator/messages": {"get": messages},
        "/_emulator/webhooks/deliveries": {"get": deliveries},
        "/_emulator/webhooks/flush": {
            "post": _admin(
                "Send every pending delivery now, skipping the backoff; answer when all are done.",
                {
                    "type": "object",
                    "properties": {"settled": {"type": "boolean"}, "deliveries": _LIST_OF_OBJECTS},
                },
            )
        },
        "/_emulator/clock": {
            "get": _admin("The emulator's clock (scheduled messages go by it).", clock),
            "post": _admin(
                "Move the clock forward; scheduled messages now due are sent.", clock, advance
            ),
        },
    }
