"""Request bodies of the emulated API, once `json_body` has read them: validated and
normalised, or a 400 naming every problem.

Fields and types follow the published reference; unknown fields are ignored
unless strict (docs/design/emulator-choices.md). The admin seed body is in `seed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import problem
from postscript_audience_lab.emulator.postscript.model.fields import FieldReader
from postscript_audience_lab.emulator.postscript.model.keywords import Keyword, find_keyword
from postscript_audience_lab.emulator.postscript.model.messages import CATEGORIES, MessageDraft
from postscript_audience_lab.emulator.postscript.model.phones import lookup_digits
from postscript_audience_lab.emulator.postscript.model.store import SubscriberDraft, SubscriberPatch
from postscript_audience_lab.emulator.postscript.model.subscriber import parse_time
from postscript_audience_lab.emulator.postscript.model.webhooks import (
    EVENTS,
    callback_url_problem,
    read_headers,
)

__all__ = [
    "EVENT_FIELDS",
    "EVENT_IDENTIFIERS",
    "EVENT_TIME_FORMAT",
    "EVENT_TYPE",
    "Identifiers",
    "WebhookChange",
    "api_subscriber",
    "event",
    "message",
    "redact",
    "subscriber_patch",
    "unsubscribe",
    "webhook_create",
    "webhook_event",
    "webhook_update",
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
    """`POST /api/v2/subscribers` (an emulator choice): a new subscriber, pending double opt-in
    until a text from its phone confirms it (docs/design/emulator-choices.md#opt-in)."""
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
        pending=True,
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


EVENT_IDENTIFIERS = ("subscriber_id", "phone", "email")


def event(body: dict[str, Any], region: str, *, strict: bool) -> Identifiers | None:
    """`POST /api/v2/events`: check the body and say how it names its subscriber; None
    when it names none, which only `type` being required allows
    (docs/design/emulator-choices.md#event-without-subscriber): accepted, and refused strict."""
    fields = FieldReader(body, ["body"], EVENT_FIELDS, strict=strict)
    event_type = fields.string("type", required=True)
    if event_type is not None and not EVENT_TYPE.fullmatch(event_type):
        fields.fail("type", _event_type_problem(event_type), "value_error.str.regex")
    fields.event_properties()
    fields.string("external_id")
    _check_occurred_at(fields)
    identifiers = Identifiers(
        subscriber_id=fields.string("subscriber_id"),
        phone_digits=fields.phone_digits("phone", region),
        email=fields.string("email"),
    )
    names_someone = any(fields.given(name) for name in EVENT_IDENTIFIERS)
    if strict and not names_someone:
        fields.problems.append(
            problem(
                fields.loc,
                "give at least one of subscriber_id, phone or email: the document requires "
                "only type, but an event for no subscriber starts no subscriber's flow, so "
                "strict mode refuses it (the default mode accepts it)",
                "value_error.missing",
            )
        )
    fields.done()
    return identifiers if names_someone else None


_EVENT_TYPE_CHARACTERS = (
    "lowercase letters (a-z), uppercase letters (A-Z), digits (0-9) and underscores (_)"
)


def _event_type_problem(event_type: str) -> str:
    """Which characters the document accepts in `type`, and the first given that it does not."""
    allowed = f"the document accepts only {_EVENT_TYPE_CHARACTERS}"
    if not event_type:
        return f"must not be empty; {allowed}"
    position, character = next(
        (i, c) for i, c in enumerate(event_type, 1) if not EVENT_TYPE.fullmatch(c)
    )
    return f"{allowed}; character {position}, {character!r}, is not one of them"


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


MESSAGE_FIELDS = (
    "subscriber_id",
    "phone",
    "country",
    "body",
    "category",
    "scheduled_at",
    "media_url",
)
_COUNTRY = re.compile(r"[A-Za-z]{2}")


def message(body: dict[str, Any], *, strict: bool) -> MessageDraft:
    """`POST /api/v2/message_requests`: `body`, and `subscriber_id` or `phone` (read in
    `country`, US by default); `category`, `scheduled_at` and `media_url` optional."""
    fields = FieldReader(body, ["body"], MESSAGE_FIELDS, strict=strict)
    text = fields.string("body", required=True)
    if text is not None and not text.strip():
        fields.fail("body", "must not be empty", "value_error.any_str.min_length")
    country = fields.string("country")
    country = "US" if country is None else country
    if not _COUNTRY.fullmatch(country):
        fields.fail("country", "must be an ISO alpha-2 country code such as US", "value_error")
        country = "US"
    category = fields.string("category")
    category = "promotional" if category is None else category
    if category not in CATEGORIES:
        fields.fail("category", f"must be one of {', '.join(CATEGORIES)}", "value_error.enum")
    phone_digits = (
        fields.phone_digits("phone", country.upper())
        if strict
        else _lenient_digits(fields.string("phone"), country.upper())
    )
    draft = MessageDraft(
        body=text or "",
        category=category,
        subscriber_id=fields.string("subscriber_id"),
        phone_digits=phone_digits,
        media_url=_media_url(fields),
        scheduled_at=_moment(fields, "scheduled_at"),
    )
    _need_one(fields, ("subscriber_id", "phone"))
    fields.done()
    return draft


def _lenient_digits(value: str | None, region: str) -> str | None:
    return None if value is None else lookup_digits(value, region)


def _media_url(fields: FieldReader) -> str | None:
    url = fields.string("media_url")
    if url is not None and not re.fullmatch(r"https?://\S+", url):
        fields.fail("media_url", "must be an http(s) URL of the media", "value_error.url")
    return url


def _moment(fields: FieldReader, name: str) -> datetime | None:
    text = fields.string(name)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        fields.fail(name, "must be an ISO 8601 date-time", "value_error.datetime")
        return None


@dataclass(frozen=True)
class WebhookChange:
    callback_url: str | None
    headers: dict[str, str] | None
    event: str | None = None


def webhook_create(body: dict[str, Any], *, strict: bool) -> WebhookChange:
    """`POST /api/v2/webhooks`: `callback_url` and `event` required, `headers` optional."""
    fields = FieldReader(body, ["body"], ("callback_url", "event", "headers"), strict=strict)
    change = WebhookChange(
        callback_url=_callback_url(fields, required=True),
        headers=read_headers(fields) or {},
        event=_event_name(fields, "event", required=True),
    )
    fields.done()
    return change


def webhook_update(body: dict[str, Any], *, strict: bool) -> WebhookChange:
    """`PATCH /api/v2/webhooks/{id}`: `callback_url` and/or `headers` (which replace)."""
    fields = FieldReader(body, ["body"], ("callback_url", "headers"), strict=strict)
    change = WebhookChange(callback_url=_callback_url(fields), headers=read_headers(fields))
    fields.done()
    return change


def webhook_event(body: dict[str, Any], *, strict: bool) -> str:
    """`POST /api/v2/webhooks/test`: the `event` to send a test delivery of."""
    fields = FieldReader(body, ["body"], ("event",), strict=strict)
    event_name = _event_name(fields, "event", required=True)
    fields.done()
    assert event_name is not None
    return event_name


def _callback_url(fields: FieldReader, *, required: bool = False) -> str | None:
    url = fields.string("callback_url", required=required)
    problem_text = None if url is None else callback_url_problem(url)
    if problem_text is not None:
        fields.fail("callback_url", problem_text, "value_error.url")
        return None
    return url


def _event_name(fields: FieldReader, name: str, *, required: bool) -> str | None:
    value = fields.string(name, required=required)
    if value is not None and value not in EVENTS:
        fields.fail(name, f"must be one of {', '.join(EVENTS)}", "value_error.enum")
        return None
    return value
