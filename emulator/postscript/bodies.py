"""Request bodies of the emulated API, once `json_body` has read them: validated and
normalised, or a 400 naming every problem.

Fields and types follow the published reference; unknown fields are ignored
unless strict (docs/design.md §2.8). The admin seed body is in `seed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulator.postscript.errors import problem
from emulator.postscript.fields import FieldReader
from emulator.postscript.keywords import Keyword, find_keyword
from emulator.postscript.store import SubscriberDraft, SubscriberPatch

__all__ = [
    "EVENT_FIELDS",
    "EVENT_TIME_FORMAT",
    "EVENT_TYPE",
    "Identifiers",
    "api_subscriber",
    "event",
    "redact",
    "subscriber_patch",
    "unsubscribe",
]

EVENT_TYPE = re.compile(r"[A-Za-z0-9_]+")
EVENT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
EVENT_FIELDS = (
    "type",
    "subscriber_id",
    "phone",
    "email",
    "properties",
    "occurred_at",
    "external_id",
)


@dataclass(frozen=True)
class Identifiers:
    """How a body names its subscriber(s); a phone is kept as the digits it matches on."""

    subscriber_id: str | None = None
    phone_digits: str | None = None
    email: str | None = None
    shopify_customer_id: str | None = None


def api_subscriber(
    body: dict[str, Any], region: str, keywords: tuple[Keyword, ...], *, strict: bool
) -> SubscriberDraft:
    """`POST /api/v2/subscribers` (an emulator choice): a new subscriber, pending double opt-in."""
    fields = FieldReader(
        body,
        ["body"],
        (
            "phone_number",
            "keyword",
            "keyword_id",
            "origin",
            "email",
            "tags",
            "properties",
            "shopify_customer_id",
        ),
        strict=strict,
    )
    draft = SubscriberDraft(
        phone_number=fields.phone("phone_number", region, required=True),
        email=fields.email(),
        shopify_customer_id=fields.number_or_string("shopify_customer_id"),
        tags=fields.tags(),
        properties=fields.subscriber_properties(),
        promotional_can_send=False,
        transactional_can_send=False,
        data=_opt_in_data(fields, keywords),
    )
    fields.done()
    return draft


def _opt_in_data(fields: FieldReader, keywords: tuple[Keyword, ...]) -> dict[str, Any]:
    """`data` of a new subscriber: the keyword it opted in through and its origin."""
    name = fields.string("keyword")
    keyword_id = fields.string("keyword_id")
    data: dict[str, Any] = {}
    if name is not None and keyword_id is not None:
        fields.fail("keyword_id", "give keyword or keyword_id, not both", "value_error.conflict")
    elif name is not None or keyword_id is not None:
        found = find_keyword(keywords, keyword_id=keyword_id, name=name)
        if found is not None:
            data["keyword_id"] = found.id
        else:
            fields.fail(
                "keyword" if name is not None else "keyword_id",
                "no such keyword; GET /api/v2/keywords lists them",
                "value_error.keyword",
            )
    origin = fields.string("origin")
    if origin is not None:
        data["origin"] = origin
    return data


def subscriber_patch(body: dict[str, Any], *, strict: bool) -> SubscriberPatch:
    """`PATCH /api/v2/subscribers/{id}`: `properties`, `tags`, `email`."""
    fields = FieldReader(body, ["body"], ("properties", "tags", "email"), strict=strict)
    patch = SubscriberPatch(
        properties=fields.subscriber_properties(), tags=fields.tags(), email=fields.email()
    )
    fields.done()
    return patch


def event(body: dict[str, Any], region: str, *, strict: bool) -> Identifiers:
    """`POST /api/v2/events`: check the body and say how it names its subscriber."""
    fields = FieldReader(body, ["body"], EVENT_FIELDS, strict=strict)
    event_type = fields.string("type", required=True)
    if event_type is not None and not EVENT_TYPE.fullmatch(event_type):
        fields.fail(
            "type",
            "must match [A-Za-z0-9_]+ (letters, digits, underscores)",
            "value_error.str.regex",
        )
    fields.event_properties()
    fields.string("external_id")
    _check_occurred_at(fields)
    identifiers = Identifiers(
        subscriber_id=fields.string("subscriber_id"),
        phone_digits=fields.phone_digits("phone", region),
        email=fields.string("email"),
    )
    _need_one(fields, ("subscriber_id", "phone", "email"))
    fields.done()
    return identifiers


def _check_occurred_at(fields: FieldReader) -> None:
    occurred_at = fields.string("occurred_at")
    if occurred_at is None:
        return
    try:
        datetime.strptime(occurred_at, EVENT_TIME_FORMAT)
    except ValueError:
        fields.fail(
            "occurred_at",
            "must be UTC in the form 2026-01-31 12:00:00.000000",
            "value_error.datetime",
        )


def _need_one(fields: FieldReader, names: tuple[str, ...]) -> None:
    if not any(fields.given(name) for name in names):
        choices = f"{', '.join(names[:-1])} or {names[-1]}"
        fields.problems.append(
            problem(fields.loc, f"give at least one of {choices}", "value_error.missing")
        )


def unsubscribe(body: dict[str, Any], region: str, *, strict: bool) -> Identifiers:
    """`PATCH /api/v2/compliance/unsubscribe`: `postscript_subscriber_id` and/or `phone_number`."""
    fields = FieldReader(
        body, ["body"], ("postscript_subscriber_id", "phone_number"), strict=strict
    )
    identifiers = Identifiers(
        subscriber_id=fields.string("postscript_subscriber_id"),
        phone_digits=fields.phone_digits("phone_number", region),
    )
    _need_one(fields, ("postscript_subscriber_id", "phone_number"))
    fields.done()
    return identifiers


_REDACT_FIELDS = ("postscript_subscriber_id", "shopify_customer_id", "email", "phone_number")


def redact(body: dict[str, Any], region: str, *, strict: bool) -> Identifiers:
    """`PATCH /api/v2/compliance/redact`: any of the subscriber's four identifiers."""
    fields = FieldReader(body, ["body"], _REDACT_FIELDS, strict=strict)
    identifiers = Identifiers(
        subscriber_id=fields.string("postscript_subscriber_id"),
        phone_digits=fields.phone_digits("phone_number", region),
        email=fields.string("email"),
        shopify_customer_id=_shopify_id(fields),
    )
    _need_one(fields, _REDACT_FIELDS)
    fields.done()
    return identifiers


def _shopify_id(fields: FieldReader) -> str | None:
    """Declared a string; a number (as the subscriber shows it) is read too unless strict."""
    if fields.strict:
        return fields.string("shopify_customer_id")
    value = fields.number_or_string("shopify_customer_id")
    return None if value is None else str(value)
