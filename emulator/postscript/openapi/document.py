"""The OpenAPI 3.0 document of the emulated API, served at `/openapi.json`.

Written by hand so that it states exactly what the emulator does: the
published reference's operations, parameters and fields (operation ids and
`{id}` path parameters as published), and the emulator's choices of
docs/design/emulator-choices.md. The lenient and strict documents differ where `--strict`
does: unknown body fields and undocumented property value types. Schemathesis
fuzzes the emulator against both (tests/emulator/test_fuzz.py), and
tests/emulator/test_conformance.py holds both to the published reference.
"""

from __future__ import annotations

from typing import Any

from postscript_audience_lab.emulator.postscript.json_body import API_BODY_LIMIT
from postscript_audience_lab.emulator.postscript.model.subscriber import MAX_CUSTOM_PROPERTIES
from postscript_audience_lab.emulator.postscript.openapi.admin import admin_paths
from postscript_audience_lab.emulator.postscript.openapi.messaging import (
    messaging_paths,
    messaging_schemas,
)
from postscript_audience_lab.emulator.postscript.openapi.schemas import (
    EMAIL_PATTERN,
    SCHEMAS,
    json_content,
    nullable,
    ref,
    request_body,
)
from postscript_audience_lab.emulator.postscript.web.bodies import EVENT_FIELDS
from postscript_audience_lab.emulator.postscript.web.query import FILTER_OPERATORS, SORT_FIELDS

__all__ = ["openapi_document"]

_PHONE = "Any writing of a phone number; E.164 (`+15555550100`) is recommended."
_SHOP_TOKEN = {
    "name": "X-Postscript-Shop-Token",
    "in": "header",
    "required": False,
    "description": "Partners only: the API key of the shop the partner acts for.",
    "schema": {"type": "string"},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR_CODE = json_content(ref("ErrorCode"), "Error (`error_code` envelope)")
_BAD_INPUT = json_content(ref("ValidationErrors"), "Bad input (`errors` envelope)")
_BODY_ERRORS = {
    "400": _BAD_INPUT,
    "413": json_content(ref("ErrorCode"), f"A body over {API_BODY_LIMIT:,} bytes"),
    "415": json_content(ref("ErrorCode"), "A Content-Type other than application/json"),
}
_ACCESS_DENIED = json_content(ref("ValidationErrors"), "Access denied (`v2.access_denied`)")


def _answers(
    ok: str, schema: dict[str, Any], *errors: str, denied: dict[str, Any] = _ACCESS_DENIED
) -> dict[str, Any]:
    """The success answer, every call's 401/403/429, and the operation's own errors."""
    answers: dict[str, Any] = {
        ok: json_content(schema, "Success"),
        "401": json_content(ref("ErrorCode"), "Missing or wrong key"),
        "403": denied,
        "429": json_content(ref("ErrorCode"), "Over the rate limit (error_code 3002)"),
    }
    for status in errors:
        answers[status] = _BODY_ERRORS.get(status, _ERROR_CODE)
    return answers


def _object(required: list[str], properties: dict[str, Any], strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if strict:
        schema["additionalProperties"] = False
    return schema


def _any_of_given(present: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """At least one of the fields present and not null (`present`: its schema when given)."""
    return [{"required": [name], "properties": {name: schema}} for name, schema in present.items()]


def _subscriber_properties(strict: bool) -> dict[str, Any]:
    values: dict[str, Any] = (
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer"},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
        if strict
        else {}
    )
    as_object = {"type": "object", "maxProperties": MAX_CUSTOM_PROPERTIES}
    if strict:
        as_object["additionalProperties"] = values
    return nullable(
        {
            "anyOf": [as_object, {"type": "string", "description": "A JSON object, as text."}],
            "description": "Strings, integers, string arrays or ISO 8601 date(time)s.",
        }
    )


def _event_properties(strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if strict:
        scalars = [{"type": "string"}, {"type": "boolean"}, {"type": "number"}]
        schema["additionalProperties"] = {"anyOf": scalars}
    return nullable(schema)


def _filter_parameters() -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for field_name, operators in FILTER_OPERATORS.items():
        for op in operators:
            if op == "in":
                schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
            elif field_name == "ps_id":
                schema = {"type": "integer", "minimum": 0}
            elif field_name in ("created_at", "updated_at"):
                schema = {"type": "string", "format": "date-time"}
            else:
                schema = {"type": "string"}
            parameter = {"name": f"{field_name}__{op}", "in": "query", "required": False}
            if op == "in":
                parameter.update(style="form", explode=True)
            parameters.append({**parameter, "schema": schema})
    return parameters


def _subscriber_paths(strict: bool) -> dict[str, Any]:
    sort = {
        "name": "sort",
        "in": "query",
        "required": False,
        "schema": {
            "type": "string",
            "enum": [f"{f}__{d}" for f in SORT_FIELDS for d in ("asc", "desc")],
        },
    }
    page = {
        "name": "page",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
    }
    page_of_subscribers = {
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
            "subscribers": {"type": "array", "items": ref("Subscriber")},
        },
    }
    email = nullable({"type": "string", "pattern": EMAIL_PATTERN})
    create = _object(
        ["phone_number"],
        {
            "phone_number": {"type": "string", "description": _PHONE},
            "keyword": nullable({"type": "string", "description": "A keyword's name, any case."}),
            "keyword_id": nullable({"type": "string"}),
            "origin": nullable({"type": "string"}),
            "email": email,
            "tags": ref("Tags"),
            "properties": _subscriber_properties(strict),
            "shopify_customer_id": {
                "nullable": True,
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            },
        },
        strict,
    )
    update = _object(
        [],
        {"properties": _subscriber_properties(strict), "tags": ref("Tags"), "email": email},
        strict,
    )
    strict_400 = ("400",) if strict else ()
    return {
        "/api/v2/subscribers": {
            "get": {
                "operationId": "get-subscribers",
                "tags": ["Subscribers"],
                "summary": "Subscribers matching every filter given, 100 per page.",
                "parameters": [*_filter_parameters(), sort, page, _SHOP_TOKEN],
                "responses": _answers("200", page_of_subscribers, "400"),
            },
            "post": {
                "operationId": "create-subscriber",
                "tags": ["Subscribers"],
                "summary": "Create a subscriber, pending double opt-in (an emulator choice).",
                "parameters": [_SHOP_TOKEN],
                "requestBody": request_body(create),
                "responses": _answers("201", ref("Subscriber"), "400", "413", "415"),
            },
        },
        "/api/v2/subscribers/{id}": {
            "get": {
                "operationId": "get-subscriber",
                "tags": ["Subscribers"],
                "parameters": [_ID, _SHOP_TOKEN],
                "responses": _answers("200", ref("Subscriber"), "404", *strict_400),
            },
            "patch": {
                "operationId": "update-subscriber-by-id",
                "tags": ["Subscribers"],
                "summary": "Merge properties per key, add tags, set the email as documented.",
                "parameters": [_ID, _SHOP_TOKEN],
                "requestBody": request_body(update),
                "responses": _answers("200", ref("Subscriber"), "400", "404", "413", "415"),
            },
        },
    }


def _accepted(field: str) -> dict[str, Any]:
    item = (
        {"type": "array", "items": {"type": "string"}}
        if field == "event_ids"
        else {"type": "string"}
    )
    return {"type": "object", "required": [field], "properties": {field: item}}


def _event_and_compliance_paths(strict: bool) -> dict[str, Any]:
    text = nullable({"type": "string"})
    event_fields: dict[str, Any] = {
        "type": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
        "subscriber_id": text,
        "phone": nullable({"type": "string", "description": _PHONE}),
        "email": text,
        "properties": _event_properties(strict),
        "occurred_at": nullable(
            {
                "type": "string",
                "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{1,6}$",
                "description": "UTC, `%Y-%m-%d %H:%M:%S.%f`.",
            }
        ),
        "external_id": text,
    }
    assert tuple(event_fields) == EVENT_FIELDS
    string = {"type": "string"}
    event = {
        **_object(["type"], event_fields, strict),
        "anyOf": _any_of_given({name: string for name in ("subscriber_id", "phone", "email")}),
    }
    unsubscribe_fields = {"postscript_subscriber_id": text, "phone_number": text}
    unsubscribe = {
        **_object([], unsubscribe_fields, strict),
        "anyOf": _any_of_given(dict.fromkeys(unsubscribe_fields, string)),
    }
    # Declared a string; a number (as subscribers show it) is read too unless strict.
    shopify_given = string if strict else {"oneOf": [string, {"type": "integer"}]}
    redact_given = {
        "postscript_subscriber_id": string,
        "shopify_customer_id": shopify_given,
        "email": string,
        "phone_number": string,
    }
    redact_fields = {name: nullable(schema) for name, schema in redact_given.items()}
    redact = {**_object([], redact_fields, strict), "anyOf": _any_of_given(redact_given)}

    def compliance(operation_id: str, summary: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "patch": {
                "operationId": operation_id,
                "tags": ["Compliance"],
                "summary": summary,
                "parameters": [_SHOP_TOKEN],
                "requestBody": request_body(body),
                "responses": _answers("202", _accepted("message"), "400", "404", "413", "415"),
            }
        }

    return {
        "/api/v2/events": {
            "post": {
                "operationId": "create-custom-event",
                "tags": ["Events"],
                "summary": "Record a custom event for one existing subscriber.",
                "parameters": [_SHOP_TOKEN],
                "requestBody": request_body(event),
                "responses": _answers("202", _accepted("event_ids"), "400", "404", "413", "415"),
            }
        },
        "/api/v2/compliance/unsubscribe": compliance(
            "unsubscribe", "Opt every subscriber named out of all messages.", unsubscribe
        ),
        "/api/v2/compliance/redact": compliance(
            "redact",
            "Forget the personal data of every subscriber named, and opt them out.",
            redact,
        ),
    }


def _identity_and_keyword_paths(strict: bool) -> dict[str, Any]:
    strict_400 = ("400",) if strict else ()
    keywords_denied = json_content(ref("PermissionError"), "No permission")
    me_answers = _answers(
        "200",
        {
            "type": "object",
            "required": ["resource_id", "resource_name", "resource_type"],
            "properties": {
                "resource_id": {"type": "string"},
                "resource_name": {"type": "string"},
                "resource_type": {"type": "string", "enum": ["shop", "partner"]},
            },
        },
    )
    if strict:
        me_answers["400"] = json_content(ref("ContextErrors"), "Bad input (`ctx`/`log` items)")
    keyword_list = {
        "type": "object",
        "required": ["keywords"],
        "properties": {"keywords": {"type": "array", "items": ref("Keyword")}},
    }
    return {
        "/api/v2/me": {
            "get": {
                "operationId": "verify-identity",
                "tags": ["Identity"],
                "summary": "The shop (or partner) the credentials name.",
                "parameters": [_SHOP_TOKEN],
                "responses": me_answers,
            }
        },
        "/api/v2/keywords": {
            "get": {
                "operationId": "get-keywords",
                "tags": ["Keywords"],
                "parameters": [_SHOP_TOKEN],
                "responses": _answers("200", keyword_list, *strict_400, denied=keywords_denied),
            }
        },
        "/api/v2/keywords/{id}": {
            "get": {
                "operationId": "get-keyword",
                "tags": ["Keywords"],
                "parameters": [_ID, _SHOP_TOKEN],
                "responses": _answers(
                    "200", ref("Keyword"), "404", *strict_400, denied=keywords_denied
                ),
            }
        },
    }


def openapi_document(*, strict: bool = False) -> dict[str, Any]:
    mode = "strict (`--strict`)" if strict else "lenient (the default)"
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Postscript API (pslab emulator)",
            "version": "2",
            "description": (
                "The subscriber, event, keyword, compliance, identity, message and webhook "
                "operations of "
                "Postscript's Partner API v2 as the pslab emulator serves them, in its "
                f"{mode} mode, plus its /_emulator admin surface. Where the published "
                "reference is silent the behaviour is the emulator's choice "
                "(docs/design/emulator-choices.md), named in the X-Pslab-Emulator-Choice "
                "header of answers it shapes."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "paths": {
            **_identity_and_keyword_paths(strict),
            **_subscriber_paths(strict),
            **_event_and_compliance_paths(strict),
            **messaging_paths(strict, _answers, [_SHOP_TOKEN], [_ID, _SHOP_TOKEN]),
            **admin_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A shop key, or a partner key with X-Postscript-Shop-Token.",
                },
                "basicAuth": {"type": "http", "scheme": "basic", "description": "The key as user."},
            },
            "schemas": {**SCHEMAS, **messaging_schemas()},
        },
    }
