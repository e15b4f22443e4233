"""The OpenAPI 3.0 document of the emulated API, served at `/openapi.json`.

Written by hand so that it states exactly what the emulator does, including
the emulator choices of docs/design.md §2; schemathesis fuzzes the emulator against it.
"""

from __future__ import annotations

from typing import Any

from emulator.postscript.bodies import SEED_FIELDS, SEED_ID
from emulator.postscript.faults import MAX_RATE_LIMIT_RPS, MAX_WAIT_MS
from emulator.postscript.json_body import ADMIN_BODY_LIMIT, API_BODY_LIMIT, MAX_NESTING
from emulator.postscript.query import FILTER_OPERATORS, SORT_FIELDS
from emulator.postscript.subscriber import MAX_CUSTOM_PROPERTIES

__all__ = ["openapi_document"]

_JSON = "application/json"
_EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_PHONE_DESCRIPTION = (
    "A complete phone number; E.164 (`+15555550100`) or national format read with region US."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_ERROR_CODE = _json(_ref("ErrorCode"), "Error (`error_code` envelope)")
_BAD_INPUT = _json(_ref("ValidationErrors"), "Bad input (`errors` envelope)")
_UNSUPPORTED_MEDIA_TYPE = _json(
    _ref("ErrorCode"), "A Content-Type other than application/json or application/*+json"
)


def _too_large(limit: int) -> dict[str, Any]:
    return _json(_ref("ErrorCode"), f"A body over {limit:,} bytes")


_API_ERRORS = {
    "400": _BAD_INPUT,
    "413": _too_large(API_BODY_LIMIT),
    "415": _UNSUPPORTED_MEDIA_TYPE,
}
_BODY_ERRORS = ("400", "413", "415")  # what any call that reads a body may answer
_COMMON = {
    "401": _json(_ref("ErrorCode"), "Missing or wrong key"),
    "429": _json(_ref("ErrorCode"), "Over the rate limit (error_code 3002)"),
}


def _responses(ok: str, schema: dict[str, Any], description: str, *errors: str) -> dict[str, Any]:
    answers: dict[str, Any] = {ok: _json(schema, description), **_COMMON}
    for status in errors:
        answers[status] = _API_ERRORS.get(status, _ERROR_CODE)
    return answers


def _exactly_one_of(*names: str) -> list[dict[str, Any]]:
    """One branch per identifier: present and not null. Exactly one must hold."""
    return [{"required": [n], "properties": {n: {"type": "string"}}} for n in names]


def _filter_parameters() -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for field_name, operators in FILTER_OPERATORS.items():
        for op in operators:
            name = f"{field_name}__{op}"
            if op == "in":
                schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
                description = "Repeated parameters or one comma-joined value."
            elif field_name == "ps_id":
                schema, description = {"type": "integer", "minimum": 0}, "Exact ps_id."
            elif field_name in ("created_at", "updated_at"):
                schema = {"type": "string", "format": "date-time"}
                description = "ISO 8601 date or date-time; naive means UTC."
            else:
                schema, description = {"type": "string"}, ""
            if field_name == "phone_number":
                description += " Matches on the digits of the number (region US)."
            if field_name == "email":
                description += " Case-insensitive."
            parameter = {"name": name, "in": "query", "required": False, "schema": schema}
            if op == "in":
                parameter.update(style="form", explode=True)
            parameters.append({**parameter, "description": description.strip()})
    return parameters


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
        "phone_number": _nullable({"type": "string", "pattern": r"^\+[0-9]+$"}),
        "email": _nullable({"type": "string"}),
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

_SCHEMAS: dict[str, Any] = {
    "Subscriber": _SUBSCRIBER,
    "ErrorCode": {
        "type": "object",
        "required": ["error_code", "error_message", "success"],
        "properties": {
            "error_code": {"type": "integer"},
            "error_message": {"type": "string"},
            "success": {"type": "boolean", "enum": [False]},
        },
    },
    "ValidationErrors": {
        "type": "object",
        "required": ["errors"],
        "properties": {
            "errors": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "properties": {
                        "loc": {
                            "type": "array",
                            "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        },
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            }
        },
    },
    "Properties": _nullable({"type": "object", "maxProperties": MAX_CUSTOM_PROPERTIES}),
    "Tags": _nullable({"type": "array", "items": {"type": "string", "minLength": 1}}),
}

_CREATE_SUBSCRIBER = {
    "type": "object",
    "required": ["phone_number"],
    "additionalProperties": False,
    "properties": {
        "phone_number": {"type": "string", "description": _PHONE_DESCRIPTION},
        "keyword": _nullable({"type": "string", "description": "A keyword's name, any case."}),
        "keyword_id": _nullable({"type": "string"}),
        "origin": _nullable({"type": "string"}),
        "email": _nullable({"type": "string", "pattern": _EMAIL_PATTERN}),
        "tags": _ref("Tags"),
        "properties": _ref("Properties"),
    },
}

_PATCH_SUBSCRIBER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "properties": _ref("Properties"),
        "tags": _ref("Tags"),
        "email": _nullable({"type": "string", "pattern": _EMAIL_PATTERN}),
    },
}

_EVENT = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
        "subscriber_id": _nullable({"type": "string"}),
        "phone": _nullable({"type": "string", "description": _PHONE_DESCRIPTION}),
        "email": _nullable({"type": "string"}),
        "properties": _nullable({"type": "object"}),
        "occurred_at": _nullable(
            {
                "type": "string",
                "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{1,6}$",
                "description": "UTC, `%Y-%m-%d %H:%M:%S.%f`.",
            }
        ),
        "external_id": _nullable({"type": "string"}),
    },
    "oneOf": _exactly_one_of("subscriber_id", "phone", "email"),
}

_UNSUBSCRIBE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "postscript_subscriber_id": _nullable({"type": "string"}),
        "phone_number": _nullable({"type": "string"}),
    },
    "oneOf": _exactly_one_of("postscript_subscriber_id", "phone_number"),
}

_SUBSCRIBER_ID = {
    "name": "subscriber_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "description": (
            f"UTF-8 JSON nested at most {MAX_NESTING} levels, without NaN, Infinity, "
            "lone surrogates or integers over 4,300 digits; sent as application/json, "
            "application/*+json or without a Content-Type."
        ),
        "content": {_JSON: {"schema": schema}},
    }


def _api_paths() -> dict[str, Any]:
    page = {
        "name": "page",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
    }
    sort = {
        "name": "sort",
        "in": "query",
        "required": False,
        "schema": {
            "type": "string",
            "enum": [f"{f}__{d}" for f in SORT_FIELDS for d in ("asc", "desc")],
        },
    }
    subscriber_list = {
        "type": "object",
        "required": ["page_info", "subscribers"],
        "properties": {
            "page_info": {
                "type": "object",
                "required": ["page", "total_pages"],
                "properties": {
                    "page": {"type": "integer", "minimum": 1},
                    "total_pages": {"type": "integer", "minimum": 1},
                },
            },
            "subscribers": {"type": "array", "items": _ref("Subscriber")},
        },
    }
    return {
        "/api/v2/me": {
            "get": {
                "operationId": "me",
                "summary": "The shop the key belongs to.",
                "responses": _responses(
                    "200",
                    {
                        "type": "object",
                        "required": ["resource_id", "resource_name", "resource_type"],
                        "properties": {
                            "resource_id": {"type": "string"},
                            "resource_name": {"type": "string"},
                            "resource_type": {"type": "string"},
                        },
                    },
                    "The key's shop",
                ),
            }
        },
        "/api/v2/subscribers": {
            "get": {
                "operationId": "listSubscribers",
                "summary": "Subscribers matching every filter given, 100 per page by default.",
                "parameters": [*_filter_parameters(), sort, page],
                "responses": _responses("200", subscriber_list, "One page of subscribers", "400"),
            },
            "post": {
                "operationId": "createSubscriber",
                "summary": "Create a subscriber, pending double opt-in (cannot be sent to yet).",
                "description": (
                    "`keyword` or `keyword_id`, not both, naming an existing keyword; "
                    "a phone number already taken is a 400 (`value_error.duplicate`)."
                ),
                "requestBody": _body(_CREATE_SUBSCRIBER),
                "responses": _responses(
                    "201", _ref("Subscriber"), "The new subscriber", *_BODY_ERRORS
                ),
            },
        },
        "/api/v2/subscribers/{subscriber_id}": {
            "parameters": [_SUBSCRIBER_ID],
            "get": {
                "operationId": "getSubscriber",
                "responses": _responses("200", _ref("Subscriber"), "The subscriber", "404"),
            },
            "patch": {
                "operationId": "updateSubscriber",
                "summary": "Merge properties per key, add tags, set the email only when empty.",
                "requestBody": _body(_PATCH_SUBSCRIBER),
                "responses": _responses(
                    "200", _ref("Subscriber"), "The updated subscriber", *_BODY_ERRORS, "404"
                ),
            },
        },
        "/api/v2/events": {
            "post": {
                "operationId": "createEvent",
                "summary": "Record a custom event for one existing subscriber.",
                "requestBody": _body(_EVENT),
                "responses": _responses(
                    "202",
                    {
                        "type": "object",
                        "required": ["event_ids"],
                        "properties": {"event_ids": {"type": "array", "items": {"type": "string"}}},
                    },
                    "Accepted",
                    *_BODY_ERRORS,
                    "404",
                ),
            }
        },
        "/api/v2/compliance/unsubscribe": {
            "patch": {
                "operationId": "complianceUnsubscribe",
                "summary": "Stop all sending to one subscriber.",
                "requestBody": _body(_UNSUBSCRIBE),
                "responses": _responses(
                    "202",
                    {
                        "type": "object",
                        "required": ["message"],
                        "properties": {"message": {"type": "string"}},
                    },
                    "Unsubscribed",
                    *_BODY_ERRORS,
                    "404",
                ),
            }
        },
        "/api/v2/keywords": {
            "get": {
                "operationId": "listKeywords",
                "responses": _responses(
                    "200",
                    {
                        "type": "object",
                        "required": ["keywords"],
                        "properties": {
                            "keywords": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["id", "keyword"],
                                    "properties": {
                                        "id": {"type": "string"},
                                        "keyword": {"type": "string"},
                                    },
                                },
                            }
                        },
                    },
                    "The shop's keywords",
                ),
            }
        },
    }


def _admin_paths() -> dict[str, Any]:
    def admin(
        summary: str, ok: dict[str, Any], body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "tags": ["emulator admin"],
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "OK", "content": {_JSON: {"schema": ok}}}},
        }
        if body is not None:
            operation["requestBody"] = _body(body)
            operation["responses"].update(
                {
                    "400": _BAD_INPUT,
                    "413": _too_large(ADMIN_BODY_LIMIT),
                    "415": _UNSUPPORTED_MEDIA_TYPE,
                }
            )
        return operation

    faults = {
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
            "seed": _nullable({"type": "integer"}),
        },
    }
    subscribers = {"type": "array", "items": _ref("Subscriber")}
    seed_item = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{name: {} for name in SEED_FIELDS},
            "id": {"type": "string", "pattern": f"^{SEED_ID.pattern}$"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "/_emulator/reset": {
            "post": admin(
                "Forget all subscribers, events and the request journal.", {"type": "object"}
            )
        },
        "/_emulator/subscribers": {
            "post": admin(
                "Seed subscribers (confirmed, can_send true unless given).",
                {"type": "object", "properties": {"subscribers": subscribers}},
                {
                    "type": "object",
                    "required": ["subscribers"],
                    "properties": {"subscribers": {"type": "array", "items": seed_item}},
                },
            )
        },
        "/_emulator/state": {
            "get": admin(
                "Every subscriber and every accepted event.",
                {
                    "type": "object",
                    "properties": {
                        "subscribers": subscribers,
                        "events": {"type": "array", "items": {"type": "object"}},
                    },
                },
            )
        },
        "/_emulator/requests": {
            "get": admin(
                "The latest API requests (method, path, query, status, time, duration_ms, fault).",
                {
                    "type": "object",
                    "properties": {"requests": {"type": "array", "items": {"type": "object"}}},
                },
            )
        },
        "/_emulator/faults": {
            "get": admin("The current fault setting.", faults),
            "put": admin(
                "Replace the fault setting; an omitted rate_limit_rps is kept.", faults, faults
            ),
        },
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Postscript API (pslab emulator)",
            "version": "2",
            "description": (
                "The part of Postscript's v2 REST API that the pslab emulator implements, "
                "plus its /_emulator admin surface. Items the public docs leave open are "
                "the emulator's choices (see the README)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "paths": {**_api_paths(), **_admin_paths()},
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "basicAuth": {"type": "http", "scheme": "basic", "description": "The key as user."},
            },
            "schemas": _SCHEMAS,
        },
    }
