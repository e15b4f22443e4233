"""Postscript's published Partner API v2, as far as the emulator serves it: a table.

Written by hand from Postscript's Partner API reference — one documentation
page per operation, `https://developers.postscript.io/reference/<operation id>`
— for the seven groups the emulator serves (Identity, Subscribers, Events,
Keywords, Compliance, Messages, Webhooks). For each
operation: its parameters, its request body's fields with their JSON types
and which are required, the statuses the page documents, and the fields of
the success answer (dotted paths, `[]` for the items of a list). Where a page
shows only an example and no schema (the subscriber), the types are the
example's.

`tests/emulator/test_conformance.py` holds the emulator's `/openapi.json` to
this table. A difference is allowed only when `ALLOWED` names the choice of
docs/design/emulator-choices.md that explains it, or `DOCUMENTED_ELSEWHERE` the page that
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


def _sent_message(prefix: str) -> dict[str, str]:
    fields = {
        "body": "string",
        "created_at": "string",
        "credits_used": "integer",
        "id": "string",
        "media_url": "string",
        "phone": "string",
        "shop_id": "string",
        "subscriber_id": "string",
    }
    return {f"{prefix}{name}": kind for name, kind in fields.items()}


def _message_request() -> dict[str, str]:
    """create-message's and get-message-request's answer."""
    return {
        "body": "string",
        "category": "string",
        "created_at": "string",
        "id": "string",
        "phone": "string",
        "scheduled_at": "string",
        "sent_message": "object",
        **_sent_message("sent_message."),
        "status": "string",
        "status_code": "integer",
        "subscriber_id": "string",
        "updated_at": "string",
    }


def _webhook(prefix: str) -> dict[str, str]:
    """A webhook subscription as the create, get and update examples show it."""
    fields = {
        "callback_url": "string",
        "created_at": "string",
        "event": "string",
        "headers": "object",
        "id": "string",
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
    PublishedOperation(
        "create-message",
        "POST",
        "/api/v2/message_requests",
        "Messages",
        (SHOP_TOKEN,),
        frozenset({"202", "400"}),
        body={
            "subscriber_id": "string",
            "phone": "string",
            "country": "string",
            "body": "string",
            "category": "string",
            "scheduled_at": "string",
            "media_url": "string",
        },
        required=frozenset({"body"}),
        answer=_message_request(),
    ),
    PublishedOperation(
        "get-message-request",
        "GET",
        "/api/v2/message_requests/{id}",
        "Messages",
        (ID, SHOP_TOKEN),
        frozenset({"200", "400"}),
        answer=_message_request(),
    ),
    PublishedOperation(
        "get-sent-message",
        "GET",
        "/api/v2/sent_messages/{id}",
        "Messages",
        (ID, SHOP_TOKEN),
        frozenset({"200", "400"}),
        answer=_sent_message(""),
    ),
    PublishedOperation(
        "create-webhook-subscription",
        "POST",
        "/api/v2/webhooks",
        "Webhooks",
        (SHOP_TOKEN,),
        frozenset({"200", "400"}),
        body={"callback_url": "string", "event": "string", "headers": "object"},
        required=frozenset({"callback_url", "event"}),
        answer=_webhook(""),
    ),
    PublishedOperation(
        "list-webhook-subscriptions",
        "GET",
        "/api/v2/webhooks",
        "Webhooks",
        (SHOP_TOKEN,),
        frozenset({"200", "400"}),
        answer={"webhook_subscriptions": "array", **_webhook("webhook_subscriptions[].")},
    ),
    PublishedOperation(
        "get-webhook-subscription",
        "GET",
        "/api/v2/webhooks/{id}",
        "Webhooks",
        (ID, SHOP_TOKEN),
        frozenset({"200", "400"}),
        answer=_webhook(""),
    ),
    PublishedOperation(
        "update-webhook-subscription",
        "PATCH",
        "/api/v2/webhooks/{id}",
        "Webhooks",
        (ID, SHOP_TOKEN),
        frozenset({"200", "400"}),
        body={"callback_url": "string", "headers": "object"},
        answer=_webhook(""),
    ),
    PublishedOperation(
        "delete-webhook-subscription",
        "DELETE",
        "/api/v2/webhooks/{id}",
        "Webhooks",
        (ID, SHOP_TOKEN),
        frozenset({"200", "400"}),
    ),
    PublishedOperation(
        "get-webhook-signing-token",
        "GET",
        "/api/v2/webhooks/token",
        "Webhooks",
        (SHOP_TOKEN,),
        frozenset({"200", "400"}),
        answer={"token": "string"},
    ),
    PublishedOperation(
        "example-event",
        "GET",
        "/api/v2/webhooks/example",
        "Webhooks",
        (Parameter("event", "query", "string"), SHOP_TOKEN),
        frozenset({"200", "400"}),
        answer={
            "webhook_id": "string",
            "resource_type": "string",
            "resource_id": "string",
            "event_time": "string",
            "event": "string",
            "event_data": "object",
        },
    ),
    PublishedOperation(
        "test-shop-webhook",
        "POST",
        "/api/v2/webhooks/test",
        "Webhooks",
        (SHOP_TOKEN,),
        frozenset({"202", "400"}),
        body={"event": "string"},
        required=frozenset({"event"}),
        answer={"message": "string"},
    ),
)

# Statuses every operation may answer, documented outside the per-operation pages.
DOCUMENTED_ELSEWHERE = {"429": "https://developers.postscript.io/docs/rate-limits"}

_EVERY_OPERATION = tuple(op.operation_id for op in PUBLISHED)
_WITH_BODY = (
    "update-subscriber-by-id",
    "create-custom-event",
    "unsubscribe",
    "redact",
    "create-message",
    "create-webhook-subscription",
    "update-webhook-subscription",
    "test-shop-webhook",
)
_BY_SUBSCRIBER = (
    "get-subscriber",
    "update-subscriber-by-id",
    "create-custom-event",
    "unsubscribe",
    "redact",
    "create-message",
)
_BY_ID = (
    "get-message-request",
    "get-sent-message",
    "get-webhook-subscription",
    "update-webhook-subscription",
    "delete-webhook-subscription",
)
# Those that document a 400 though, lenient, nothing about the call can be bad input.
_WITHOUT_INPUT = (
    "verify-identity",
    "get-subscriber",
    "get-message-request",
    "get-sent-message",
    "list-webhook-subscriptions",
    "get-webhook-subscription",
    "delete-webhook-subscription",
    "get-webhook-signing-token",
)

# (operation id, kind of difference, name) -> the choice of docs/design/emulator-choices.md behind
# it.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("create-subscriber", "extra operation", "POST /api/v2/subscribers"): "create-subscriber",
    **{(op, "extra status", "401"): "auth-keys" for op in _EVERY_OPERATION},
    **{
        (op, "extra status", "403"): "auth-partner"
        for op in _EVERY_OPERATION
        if op not in ("get-keywords", "unsubscribe", "redact")
    },
    **{(op, "extra status", "404"): "not-found-3001" for op in (*_BY_SUBSCRIBER, *_BY_ID)},
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
    # documented ("Either subscriber_id or phone is required"); which wins is the choice
    ("create-message", "extra requirement", "one of subscriber_id, phone"): "message-statuses",
}
