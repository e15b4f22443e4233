"""The schemas and response blocks `/openapi.json` is built from (see `openapi`)."""

from __future__ import annotations

from typing import Any

from postscript_audience_lab.emulator.postscript.json_body import MAX_NESTING
from postscript_audience_lab.emulator.postscript.model.subscriber import MAX_CUSTOM_PROPERTIES

__all__ = [
    "EMAIL_PATTERN",
    "JSON",
    "SCHEMAS",
    "json_content",
    "nullable",
    "ref",
    "request_body",
]

JSON = "application/json"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "description": (
            f"UTF-8 JSON nested at most {MAX_NESTING} levels, without NaN, Infinity, "
            "lone surrogates or integers over 4,300 digits; sent as application/json, "
            "application/*+json or without a Content-Type."
        ),
        "content": {JSON: {"schema": schema}},
    }


_SUBSCRIBER = {
    "type": "object",
    "required": [
        "id",
        "ps_id",
        "phone_number",
        "email",
        "shopify_customer_id",
        "properties",
        "tags",
        "subscriptions",
        "data",
        "created_at",
        "updated_at",
    ],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^s_"},
        "ps_id": {"type": "integer"},
        "phone_number": nullable({"type": "string", "pattern": r"^\+[0-9]+$"}),
        "email": nullable({"type": "string"}),
        "shopify_customer_id": {
            "nullable": True,
            "oneOf": [{"type": "integer"}, {"type": "string"}],
        },
        "properties": {"type": "object", "maxProperties": MAX_CUSTOM_PROPERTIES},
        "tags": {"type": "array", "items": {"type": "string"}},
        "subscriptions": {
            "type": "object",
            "required": ["promotional", "transactional"],
            "properties": {
                kind: {
                    "type": "object",
                    "required": ["can_send"],
                    "properties": {"can_send": {"type": "boolean"}},
                }
                for kind in ("promotional", "transactional")
            },
        },
        "data": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

_KEYWORD = {
    "type": "object",
    "required": ["id", "keyword", "created_at", "triggered_count", "updated_at"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "keyword": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "triggered_count": {"type": "integer", "minimum": 0},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def _errors(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["errors"],
        "properties": {"errors": {"type": "array", "minItems": 1, "items": item}},
    }


_LOC = {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}

SCHEMAS: dict[str, Any] = {
    "Subscriber": _SUBSCRIBER,
    "Keyword": _KEYWORD,
    "ErrorCode": {
        "type": "object",
        "required": ["error_code", "error_message", "success"],
        "properties": {
            "error_code": {"type": "integer"},
            "error_message": {"type": "string"},
            "success": {"type": "boolean", "enum": [False]},
        },
    },
    "ValidationErrors": _errors(
        {
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {"loc": _LOC, "msg": {"type": "string"}, "type": {"type": "string"}},
        }
    ),
    "ContextErrors": _errors(
        {
            "type": "object",
            "required": ["ctx", "log", "msg", "type"],
            "properties": {
                "ctx": {"type": "object"},
                "log": {"type": "array", "items": {"type": "string"}},
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
        }
    ),
    "PermissionError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Tags": nullable({"type": "array", "items": {"type": "string", "minLength": 1}}),
}
