"""`GET /api/v2/subscribers`: filters, sort and page, read from the query string.

The parameters are the published reference's (get-subscribers). Equality and
`__in` filters on phone, email, Shopify id and ps_id go through the store's
indexes; `__contains` and date ranges then narrow the candidates. An unknown
parameter is ignored, or a 400 when strict (docs/design/emulator-choices.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import InvalidInput, problem
from postscript_audience_lab.emulator.postscript.model.phones import lookup_digits
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber, parse_time

__all__ = [
    "FILTER_OPERATORS",
    "FILTER_PARAMS",
    "KNOWN_PARAMS",
    "SORT_FIELDS",
    "SubscriberQuery",
    "parse_query",
]

FILTER_OPERATORS: dict[str, tuple[str, ...]] = {
    "phone_number": ("eq", "in", "contains"),
    "email": ("eq", "in", "contains"),
    "shopify_customer_id": ("eq", "in", "contains"),
    "created_at": ("gt", "gte", "lt", "lte", "eq"),
    "updated_at": ("gt", "gte", "lt", "lte", "eq"),
    "ps_id": ("eq",),
}
SORT_FIELDS = ("created_at", "updated_at", "phone_number", "shopify_customer_id")
FILTER_PARAMS = frozenset(f"{name}__{op}" for name, ops in FILTER_OPERATORS.items() for op in ops)
KNOWN_PARAMS = FILTER_PARAMS | {"page", "sort"}

_WHOLE = re.compile(r"[0-9]{1,18}")

Predicate = Callable[[Subscriber], bool]

_COMPARISONS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
}


@dataclass
class SubscriberQuery:
    # each lookup yields candidate subscribers from an index; candidates are their intersection
    lookups: list[Callable[[Store], list[Subscriber]]] = field(default_factory=list)
    predicates: list[Predicate] = field(default_factory=list)
    sort_field: str | None = None
    descending: bool = False
    page: int = 1

    def run(self, store: Store, page_size: int) -> tuple[list[Subscriber], int]:
        """The subscribers on the requested page and the number of pages (at least 1)."""
        with store.lock:
            matches = self._candidates(store)
        matches = [s for s in matches if all(p(s) for p in self.predicates)]
        if self.sort_field is not None:
            matches = _sorted(matches, self.sort_field, self.descending)
        total_pages = max(1, math.ceil(len(matches) / page_size))
        start = (self.page - 1) * page_size
        return matches[start : start + page_size], total_pages

    def _candidates(self, store: Store) -> list[Subscriber]:
        # pending subscribers are not listed (docs/design/emulator-choices.md#opt-in)
        if not self.lookups:
            return [s for s in store if not s.pending]
        found: dict[str, Subscriber] | None = None
        for lookup in self.lookups:
            hits = {s.id: s for s in lookup(store)}
            found = hits if found is None else {k: v for k, v in found.items() if k in hits}
        assert found is not None
        return sorted(found.values(), key=lambda s: s.ps_id)


def parse_query(
    params: Iterable[tuple[str, str]], region: str, *, strict: bool = False
) -> SubscriberQuery:
    """Read the query string; bad values are a 400, and so are unknown parameters if strict."""
    query = SubscriberQuery()
    problems: list[dict[str, Any]] = []
    values: dict[str, list[str]] = {}
    for name, value in params:
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        if not strict and name not in KNOWN_PARAMS:
            continue
        try:
            _apply(query, name, given, region)
        except ValueError as error:
            problems.append(problem(["query", name], str(error), "value_error"))
    if problems:
        raise InvalidInput(problems)
    return query


def _apply(query: SubscriberQuery, name: str, given: list[str], region: str) -> None:
    last = given[-1]
    if name == "page":
        if not _WHOLE.fullmatch(last) or int(last) < 1:
            raise ValueError("page must be a whole number from 1")
        query.page = int(last)
    elif name == "sort":
        field_name, _, direction = last.rpartition("__")
        if field_name not in SORT_FIELDS or direction not in ("asc", "desc"):
            raise ValueError(
                "sort must be <field>__asc or <field>__desc with a field in "
                + ", ".join(SORT_FIELDS)
            )
        query.sort_field, query.descending = field_name, direction == "desc"
    elif name in FILTER_PARAMS:
        field_name, _, op = name.rpartition("__")
        _add_filter(query, field_name, op, given, region)
    else:
        raise ValueError(
            f"unknown query parameter; use page, sort or one of {', '.join(sorted(FILTER_PARAMS))}"
        )


def _split_in(given: list[str]) -> list[str]:
    """`__in` takes repeated parameters, one comma-joined value, or both."""
    return [part.strip() for value in given for part in value.split(",") if part.strip()]


def _add_filter(
    query: SubscriberQuery, field_name: str, op: str, given: list[str], region: str
) -> None:
    last = given[-1]
    if field_name == "phone_number":
        if op == "contains":
            digits = "".join(ch for ch in last if ch.isdigit())
            query.predicates.append(
                lambda s: bool(digits) and s.phone_number is not None and digits in s.phone_number
            )
            return
        wanted = [lookup_digits(v, region) for v in ([last] if op == "eq" else _split_in(given))]
        query.lookups.append(
            lambda store: [s for d in wanted if (s := store.find_by_phone_digits(d)) is not None]
        )
    elif field_name == "email":
        if op == "contains":
            needle = last.lower()
            query.predicates.append(lambda s: s.email is not None and needle in s.email.lower())
            return
        emails = [last] if op == "eq" else _split_in(given)
        query.lookups.append(lambda store: [s for e in emails for s in store.find_by_email(e)])
    elif field_name == "shopify_customer_id":
        if op == "contains":
            part = last.strip()
            query.predicates.append(
                lambda s: s.shopify_customer_id is not None and part in str(s.shopify_customer_id)
            )
            return
        ids = [last.strip()] if op == "eq" else _split_in(given)
        query.lookups.append(lambda store: [s for i in ids for s in store.find_by_shopify_id(i)])
    elif field_name == "ps_id":
        if not _WHOLE.fullmatch(last.strip()):
            raise ValueError("ps_id__eq must be a whole number")
        ps_id = int(last)
        query.lookups.append(
            lambda store: [s] if (s := store.find_by_ps_id(ps_id)) is not None else []
        )
    else:
        try:
            bound = parse_time(last)
        except ValueError:
            raise ValueError(
                "give an ISO 8601 date or date-time within years 1 to 9999 in UTC, "
                "e.g. 2026-01-31T12:00:00Z"
            ) from None
        compare = _COMPARISONS[op]
        if field_name == "created_at":
            query.predicates.append(lambda s: compare(s.created_at, bound))
        else:
            query.predicates.append(lambda s: compare(s.updated_at, bound))


def _sorted(subscribers: list[Subscriber], field_name: str, descending: bool) -> list[Subscriber]:
    """Sort by one field; subscribers without a value come last either way."""
    present = [s for s in subscribers if getattr(s, field_name) is not None]
    missing = [s for s in subscribers if getattr(s, field_name) is None]
    present.sort(key=lambda s: _sort_key(getattr(s, field_name)), reverse=descending)
    return present + missing


def _sort_key(value: object) -> tuple[int, Any]:
    # Shopify ids may be seeded as ints or strings; order numbers before text.
    if isinstance(value, int):
        return (0, value)
    if isinstance(value, str):
        return (1, value.lower())
    return (0, value)
