"""`POST /_emulator/subscribers` (and `pslab emulator --seed FILE`): confirmed subscribers.

`{"subscribers":[{…}], "shop": "shop_…"}`; `shop` is optional (the default
shop). The admin surface is the emulator's own, so an unknown field is
always a 400 here, strict or not.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import InvalidInput, invalid, problem
from postscript_audience_lab.emulator.postscript.model.fields import FieldReader, Loc
from postscript_audience_lab.emulator.postscript.model.store import SubscriberDraft
from postscript_audience_lab.emulator.postscript.model.subscriber import parse_time

__all__ = ["SEED_FIELDS", "SEED_ID", "seed_shop", "seed_subscribers"]

SEED_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")  # goes into URLs as is: no "/", no dot segments
# A later created_at would leave no room for updated_at to keep increasing on each change.
LATEST_CREATED_AT = datetime(9999, 1, 1, tzinfo=UTC)

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


def seed_shop(body: dict[str, Any]) -> str | None:
    """The shop a seed names, or None for the default shop."""
    shop = body.get("shop")
    if shop is not None and (not isinstance(shop, str) or not SEED_ID.fullmatch(shop)):
        raise invalid(["body", "shop"], "must be a shop id from /_emulator/shops", "type_error.str")
    return shop


def seed_subscribers(body: dict[str, Any], region: str) -> list[SubscriberDraft]:
    """`{"subscribers":[{…}]}`: each item a confirmed subscriber, or a 400 naming every problem."""
    items = body.get("subscribers")
    extra = [key for key in body if key not in ("subscribers", "shop")]
    if extra or not isinstance(items, list):
        raise invalid(
            ["body", "subscribers"],
            'the body must be {"subscribers": [ {...}, ... ]} (and optionally "shop")',
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
        fields = FieldReader(item, loc, SEED_FIELDS, strict=True)
        draft = SubscriberDraft(
            phone_number=fields.phone("phone_number", region),
            email=fields.email(),
            properties=fields.subscriber_properties(check_types=False),  # any value
            tags=fields.tags(),
            id=_seed_id(fields),
            created_at=_seed_time(fields),
            shopify_customer_id=fields.number_or_string("shopify_customer_id"),
            loc=loc,
        )
        draft.promotional_can_send, draft.transactional_can_send = _seed_subscriptions(fields)
        problems.extend(fields.problems)
        drafts.append(draft)
    if problems:
        raise InvalidInput(problems)
    return drafts


def _seed_time(fields: FieldReader) -> datetime | None:
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


def _seed_id(fields: FieldReader) -> str | None:
    value = fields.string("id")
    if value is not None and not SEED_ID.fullmatch(value):
        fields.fail(
            "id", "must be 1 to 100 letters, digits, _ or - characters", "value_error.str.regex"
        )
        return None
    return value


def _seed_subscriptions(fields: FieldReader) -> tuple[bool, bool]:
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
