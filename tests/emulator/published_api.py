"""Postscript's published Partner API v2, as far as the emulator serves it: a table.

Written by hand from Postscript's Partner API reference — one documentation
page per operation, `https://developers.postscript.io/reference/<operation id>`
— for the five groups the emulator serves (Identity, Subscribers, Events,
Keywords, Compliance; Messages and Webhooks are not served yet). For each
operation: its parameters, its request body's fields with their JSON types
and which are required, the statuses the page documents, and the fields of
the success answer (dotted paths, `[]` for the items of a list). Where a page
shows only an example and no schema (the subscriber), the types are the
example's.

`tests/emulator/test_conformance.py` holds the emulator's `/openapi.json` to
this table. A difference is allowed only when `ALLOWED` names the choice of
docs/design.md §2.8 that explains it, or `DOCUMENTED_ELSEWHERE` the page that
documents it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ALLOWED",
    "DOCUMENTED_ELSEWHERE",
    "PUBLISHED",
    "Parameter",
    "PublishedOperation",
    "reference_page",
]

REFERENCE = "https://developers.postscript.io/reference/"


def reference_page(operation_id: str) -> str:
    return REFERENCE + operation_id


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # "query", "path" or "header"
    type: str  # the JSON type: "string", "integer", "array"


@dataclass(frozen=True)
class PublishedOperation:
    operation_id: str
    method: str
    path: str
    group: str
    parameters: tuple[Parameter, ...]
    statuses: frozenset[str]
    body: dict[str, str] = field(default_factory=dict)  # field -> JSON type
    required: frozenset[str] = frozenset()
    answer: dict[str, str] = field(default_factory=dict)  # success field path -> JSON type

    @property
    def page(self) -> str:
        return reference_page(self.operation_id)

    @property
    def success(self) -> str:
        return min(status for status in self.statuses if status.startswith("2"))


SHOP_TOKEN = Parameter("X-Postscript-Shop-Token", "header", "string")
ID = Parameter("id", "path", "string")


def _subscriber(prefix: str) -> dict[str, str]:
    """The subscriber as get-subscriber's example shows it."""
    fields = {
        "created_at": "string",
        "data": "object",
        "email": "string",
        "id": "string",
        "ps_id": "integer",
        "phone_number": "string",
        "properties": "object",
        "shopify_customer_id": "integer",
        "subscriptions": "object",
        "subscriptions.promotional.can_send": "boolean",
        "subscriptions.transactional.can_send": "boolean",
        "tags": "array",
        "updated_at": "string",
    }
    return {f"{prefix}{name}": kind for name, kind in fields.items()}


def _keyword(prefix: str) -> dict[str, str]:
    fields = {
        "created_at": "string",
        "id": "string",
        "keyword": "string",
        "triggered_count": "integer",
        "updated_at": "string",
    }
    return {f"{prefix}{name}": kind for name, kind in fields.items()}


def _filters() -> tuple[Parameter, ...]:
    """get-subscribers' query parameters, in the page's order."""
    dates = [
        Parameter(f"{name}__{op}", "query", "string")
        for name in ("created_at", "updated_at")
        for op in ("eq", "gt", "gte", "lt", "lte")
    ]
    texts = [
        Parameter(f"{name}__{op}", "query", "array" if op == "in" else "string")
        for name in ("email", "phone_number", "shopify_customer_id")
        for op in ("contains", "eq", "in")
    ]
    return (
        *dates,
        *texts,
        Parameter("page", "query", "integer"),
        Parameter("sort", "query", "string"),
        Parameter("ps_id__eq", "query", "integer"),
    )


PUBLISHED: tuple[PublishedOperation, ...] = (
    PublishedOperation(
        "verify-identity",
        "GET",
        "/api/v2/me",
        "Identity",
        (SHOP_TOKEN,),
        frozenset({"200", "400"}),
        answer={"resource_id": "string", "resource_name": "string", "resource_type": "string"},
    ),
    PublishedOperation(
        "get-subscribers",
        "GET",
        "/api/v2/subscribers",
        "Subscribers",
        (*_filters(), SHOP_TOKEN),
        frozenset({"200", "400"}),
        answer={
            "page_info.page": "integer",
            "page_info.total_pages": "integer",
            "subscribers": "array",
            **_subscriber("subscribers[]."),
        },
    ),
    PublishedOperation(
        "get-subscriber",
        "GET",
        "/api/v2/subscribers/{id}",
        "Subscribers",
        (SHOP_TOKEN, ID),
        frozenset({"200", "400"}),
        answer=_subscriber(""),
    ),
    PublishedOperation(
        "update-subscriber-by-id",
        "PATCH",
        "/api/v2/subscribers/{id}",
        "Subscribers",
        (ID, SHOP_TOKEN),
        frozenset({"200", "400"}),
        body={"email": "string", "tags": "array", "properties": "string"},
        answer={k: v for k, v in _subscriber("").items() if k != "ps_id"},
    ),
    PublishedOperation(
        "create-custom-event",
        "POST",
        "/api/v2/events",
        "Events",
        (SHOP_TOKEN,),
        frozenset({"202", "400"}),
        body={
            "type": "string",
            "subscriber_id": "string",
            "phone": "string",
            "email": "string",
            "occurred_at": "string",
            "properties": "object",
            "external_id": "string",
        },
        required=frozenset({"type"}),
        answer={"event_ids": "array"},
    ),
    PublishedOperation(
        "get-keywords",
        "GET",
        "/api/v2/keywords",
        "Keywords",
        (SHOP_TOKEN,),
        frozenset({"200", "403"}),
        answer={"keywords": "array", **_keyword("keywords[].")},
    ),
    PublishedOperation(
        "get-keyword",
        "GET",
        "/api/v2/keywords/{id}",
        "Keywords",
        (ID, SHOP_TOKEN),
        frozenset({"200", "404"}),
        answer=_keyword(""),
    ),
    PublishedOperation(
        "unsubscribe",
        "PATCH",
        "/api/v2/compliance/unsubscribe",
        "Compliance",
        (SHOP_TOKEN,),
        frozenset({"202", "403"}),
        body={"postscript_subscriber_id": "string", "phone_number": "string"},
        answer={"message": "string"},
    ),
    PublishedOperation(
        "redact",
        "PATCH",
        "/api/v2/compliance/redact",
        "Compliance",
        (SHOP_TOKEN,),
        frozenset({"202", "403"}),
        body={
            "postscript_subscriber_id": "string",
            "shopify_customer_id": "string",
            "email": "string",
            "phone_number": "string",
        },
        answer={"message": "string"},
    ),
)

# Statuses every operation may answer, documented outside the per-operation pages.
DOCUMENTED_ELSEWHERE = {"429": "https://developers.postscript.io/docs/rate-limits"}

_EVERY_OPERATION = tuple(op.operation_id for op in PUBLISHED)
_WITH_BODY = ("update-subscriber-by-id", "create-custom-event", "unsubscribe", "redact")
_BY_SUBSCRIBER = ("get-subscriber", *_WITH_BODY)
_WITHOUT_INPUT = ("verify-identity", "get-subscriber")  # those that document a 400

# (operation id, kind of difference, name) -> the choice of docs/design.md §2.8 behind it.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("create-subscriber", "extra operation", "POST /api/v2/subscribers"): "create-subscriber",
    **{(op, "extra status", "401"): "auth-keys" for op in _EVERY_OPERATION},
    **{
        (op, "extra status", "403"): "auth-partner"
        for op in _EVERY_OPERATION
        if op not in ("get-keywords", "unsubscribe", "redact")
    },
    **{(op, "extra status", "404"): "not-found-3001" for op in _BY_SUBSCRIBER},
    **{
        (op, "extra status", status): "strict-json"
        for op in _WITH_BODY
        for status in ("413", "415")
    },
    ("unsubscribe", "extra status", "400"): "bad-input-body",
    ("redact", "extra status", "400"): "bad-input-body",
    # strict: a query parameter an operation does not take is a 400 ...
    ("get-keywords", "extra status", "400"): "lenient-input",
    ("get-keyword", "extra status", "400"): "lenient-input",
    # ... and lenient, nothing about these calls can be bad input
    **{(op, "missing status", "400"): "lenient-input" for op in _WITHOUT_INPUT},
    ("create-custom-event", "extra requirement", "one of subscriber_id, phone, email"): (
        "event-identifiers"
    ),
    ("unsubscribe", "extra requirement", "one of postscript_subscriber_id, phone_number"): (
        "compliance-targets"
    ),
    (
        "redact",
        "extra requirement",
        "one of postscript_subscriber_id, shopify_customer_id, email, phone_number",
    ): "compliance-targets",
}
