"""Request bodies, once `json_body` has read them: validated and normalised, or a 400
naming every problem.

Unknown fields are rejected (`value_error.extra`) so that a typo in a client
shows up against the emulator instead of being silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator.postscript.errors import InvalidInput, invalid, problem
from emulator.postscript.keywords import Keyword
from emulator.postscript.phones import to_e164
from emulator.postscript.store import SubscriberDraft, SubscriberPatch
from emulator.postscript.subscriber import MAX_CUSTOM_PROPERTIES, parse_time

__all__ = [
    "EVENT_TIME_FORMAT",
    "EVENT_TYPE",
    "SEED_FIELDS",
    "EventTarget",
    "api_subscriber",
    "event",
    "seed_subscribers",
    "subscriber_patch",
    "unsubscribe",
]

EVENT_TYPE = re.compile(r"[A-Za-z0-9_]+")
EVENT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SEED_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")  # goes into URLs as is: no "/", no dot segments
# A later created_at would leave no room for updated_at to keep increasing on each change.
LATEST_CREATED_AT = datetime(9999, 1, 1, tzinfo=UTC)

Loc = list[str | int]


class _Fields:
    """Reads the fields of one JSON object, collecting problems instead of stopping at the first."""

    def __init__(self, body: dict[str, Any], loc: Loc, allowed: tuple[str, ...]) -> None:
        self.body = body
        self.loc = loc
        self.problems: list[dict[str, Any]] = []
        for key in body:
            if key not in allowed:
                self.fail(
                    key,
                    f"unknown field; allowed fields are {', '.join(allowed)}",
                    "value_error.extra",
                )

    def fail(self, name: str, msg: str, type_: str) -> None:
        self.problems.append(problem([*self.loc, name], msg, type_))

    def given(self, name: str) -> bool:
        return self.body.get(name) is not None

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.fail(name, f"{name} is required", "value_error.missing")
            return None
        if not isinstance(value, str):
            self.fail(name, "must be a string", "type_error.str")
            return None
        return value

    def obj(self, name: str) -> dict[str, Any]:
        value = self.body.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(name, "must be a JSON object", "type_error.dict")
            return {}
        return value

    def tags(self, name: str = "tags") -> list[str]:
        value = self.body.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            self.fail(name, "must be a list of non-empty strings", "type_error.list")
            return []
        return value

    def email(self, name: str = "email") -> str | None:
        value = self.string(name)
        if value is not None and not _EMAIL.fullmatch(value):
            self.fail(name, "must be an email address like name@example.com", "value_error.email")
            return None
        return value

    def phone(self, name: str, region: str, *, required: bool = False) -> str | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        e164 = to_e164(value, region)
        if e164 is None:
            self.fail(
                name, "must be a complete phone number, e.g. +15555550100", "value_error.phone"
            )
        return e164

    def properties(self, name: str = "properties") -> dict[str, Any]:
        value = self.obj(name)
        if len(value) > MAX_CUSTOM_PROPERTIES:
            self.fail(
                name,
                f"a subscriber can have at most {MAX_CUSTOM_PROPERTIES} custom properties",
                "value_error.too_many_properties",
            )
        return value

    def one_of(self, *names: str) -> str | None:
        """The one of `names` the body gives; with none or several, a problem and None."""
        given = [name for name in names if self.given(name)]
        if len(given) == 1:
            return given[0]
        choices = f"{', '.join(names[:-1])} or {names[-1]}"
        self.problems.append(
            problem(
                self.loc,
                f"give exactly one of {choices}",
                "value_error.conflict" if given else "value_error.missing",
            )
        )
        return None

    def done(self) -> None:
        if self.problems:
            raise InvalidInput(self.problems)


def api_subscriber(body: dict[str, Any], region: str, keywords: list[Keyword]) -> SubscriberDraft:
    """`POST /api/v2/subscribers`: a new subscriber, pending double opt-in."""
    fields = _Fields(
        body,
        ["body"],
        ("phone_number", "keyword", "keyword_id", "origin", "email", "tags", "properties"),
    )
    phone = fields.phone("phone_number", region, required=True)
    keyword_name = fields.string("keyword")
    keyword_id = fields.string("keyword_id")
    data: dict[str, Any] = {}
    if keyword_name is not None and keyword_id is not None:
        fields.fail("keyword_id", "give keyword or keyword_id, not both", "value_error.conflict")
    elif keyword_name is not None or keyword_id is not None:
        match = [
            k for k in keywords if k.id == keyword_id or (keyword_name or "").upper() == k.keyword
        ]
        if match:
            data["keyword_id"] = match[0].id
        else:
            name = "keyword" if keyword_name is not None else "keyword_id"
            fields.fail(
                name, "no such keyword; GET /api/v2/keywords lists them", "value_error.keyword"
            )
    origin = fields.string("origin")
    if origin is not None:
        data["origin"] = origin
    draft = SubscriberDraft(
        phone_number=phone,
        email=fields.email(),
        tags=fields.tags(),
        properties=fields.properties(),
        promotional_can_send=False,
        transactional_can_send=False,
        data=data,
    )
    fields.done()
    return draft


SEED_FIELDS = (
    "phone_number",
    "email",
    "properties",
    "tags",
    "id",
    "created_at",
    "shopify_customer_id",
    "subscriptions",
)


def seed_subscribers(body: dict[str, Any], region: str) -> list[SubscriberDraft]:
    """`POST /_emulator/subscribers`: `{"subscribers":[{…}]}`, confirmed subscribers."""
    items = body.get("subscribers")
    extra = [key for key in body if key != "subscribers"]
    if extra or not isinstance(items, list):
        raise invalid(
            ["body", "subscribers"],
            'the body must be {"subscribers": [ {...}, ... ]}',
            "type_error.list",
        )
    drafts = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        loc: Loc = ["body", "subscribers", index]
        if not isinstance(item, dict):
            problems.append(
                problem(loc, "each subscriber must be a JSON object", "type_error.dict")
            )
            continue
        fields = _Fields(item, loc, SEED_FIELDS)
        draft = SubscriberDraft(
            phone_number=fields.phone("phone_number", region),
            email=fields.email(),
            properties=fields.properties(),
            tags=fields.tags(),
            id=_seed_id(fields),
            created_at=_seed_time(fields),
            shopify_customer_id=_shopify_id(fields),
            loc=loc,
        )
        draft.promotional_can_send, draft.transactional_can_send = _seed_subscriptions(fields)
        problems.extend(fields.problems)
        drafts.append(draft)
    if problems:
        raise InvalidInput(problems)
    return drafts


def _seed_time(fields: _Fields) -> datetime | None:
    text = fields.string("created_at")
    if text is None:
        return None
    try:
        moment = parse_time(text)
    except ValueError:
        moment = None
    if moment is None or moment >= LATEST_CREATED_AT:
        fields.fail(
            "created_at",
            "must be an ISO 8601 date-time from year 1 to 9998 in UTC",
            "value_error.datetime",
        )
        return None
    return moment


def _seed_id(fields: _Fields) -> str | None:
    value = fields.string("id")
    if value is not None and not SEED_ID.fullmatch(value):
        fields.fail(
            "id", "must be 1 to 100 letters, digits, _ or - characters", "value_error.str.regex"
        )
        return None
    return value


def _shopify_id(fields: _Fields) -> int | str | None:
    value = fields.body.get("shopify_customer_id")
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    fields.fail("shopify_customer_id", "must be a number or a string", "type_error")
    return None


def _seed_subscriptions(fields: _Fields) -> tuple[bool, bool]:
    value = fields.obj("subscriptions")
    flags = []
    for kind in ("promotional", "transactional"):
        entry = value.get(kind, {"can_send": True})
        can_send = entry.get("can_send") if isinstance(entry, dict) else None
        if not isinstance(can_send, bool):
            fields.fail("subscriptions", f'{kind} must be {{"can_send": true|false}}', "type_error")
            can_send = True
        flags.append(can_send)
    return flags[0], flags[1]


def subscriber_patch(body: dict[str, Any]) -> SubscriberPatch:
    fields = _Fields(body, ["body"], ("properties", "tags", "email"))
    patch = SubscriberPatch(
        properties=fields.properties(), tags=fields.tags(), email=fields.email()
    )
    fields.done()
    return patch


@dataclass(frozen=True)
class EventTarget:
    kind: str  # "subscriber_id", "phone" or "email"
    value: str


def event(body: dict[str, Any], region: str) -> EventTarget:
    """`POST /api/v2/events`: check the body and say which subscriber it names."""
    fields = _Fields(
        body,
        ["body"],
        ("type", "subscriber_id", "phone", "email", "properties", "occurred_at", "external_id"),
    )
    event_type = fields.string("type", required=True)
    if event_type is not None and not EVENT_TYPE.fullmatch(event_type):
        fields.fail(
            "type",
            "must match [A-Za-z0-9_]+ (letters, digits, underscores)",
            "value_error.str.regex",
        )
    fields.obj("properties")
    fields.string("external_id")
    occurred_at = fields.string("occurred_at")
    if occurred_at is not None:
        try:
            datetime.strptime(occurred_at, EVENT_TIME_FORMAT)
        except ValueError:
            fields.fail(
                "occurred_at",
                "must be UTC in the form 2026-01-31 12:00:00.000000",
                "value_error.datetime",
            )
    kind = fields.one_of("subscriber_id", "phone", "email")
    value = None
    if kind == "phone":
        value = fields.phone(kind, region)
    elif kind is not None:
        value = fields.string(kind)
    fields.done()  # raises unless one identifier was given, and readable
    assert kind is not None
    assert value is not None
    return EventTarget(kind, value)


def unsubscribe(body: dict[str, Any], region: str) -> EventTarget:
    """`PATCH /api/v2/compliance/unsubscribe`: by `postscript_subscriber_id` or `phone_number`."""
    fields = _Fields(body, ["body"], ("postscript_subscriber_id", "phone_number"))
    name = fields.one_of("postscript_subscriber_id", "phone_number")
    value = None
    if name == "phone_number":
        value = fields.phone(name, region)
    elif name is not None:
        value = fields.string(name)
    fields.done()  # raises unless one identifier was given, and readable
    assert value is not None
    return EventTarget("phone" if name == "phone_number" else "subscriber_id", value)
