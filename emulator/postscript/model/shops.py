"""Who the emulator answers for: its shops and partners, and the keys that name them.

A shop calls with its own API key (`Authorization: Bearer sk_…`); a partner
calls with its partner key and names the shop it acts for in
`X-Postscript-Shop-Token` (docs/design/postscript-api.md#auth). Each shop has its own
subscribers, events and keywords; `PUT /_emulator/shops` (or
`pslab emulator --shops FILE`) replaces the whole setting, keywords included
(JOIN and VIP, plus each shop's `keywords`), and `POST /_emulator/keywords`
adds keywords to one shop.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import InvalidInput, problem
from postscript_audience_lab.emulator.postscript.model.keywords import (
    DEFAULT_KEYWORDS,
    SET_UP,
    Keyword,
    read_keywords,
)

__all__ = [
    "DEFAULT_PARTNER_ID",
    "DEFAULT_PARTNER_KEY",
    "DEFAULT_PUBLIC_KEY",
    "DEFAULT_SHOP_ID",
    "OPERATION_GROUPS",
    "Partner",
    "Shop",
    "Tenancy",
    "default_tenancy",
    "parse_tenancy",
]

DEFAULT_SHOP_ID = "shop_pslab0emulator"
DEFAULT_SHOP_NAME = "pslab emulator"
DEFAULT_PUBLIC_KEY = "pk_test_pslab"
DEFAULT_PARTNER_ID = "partner_pslab0emulator"
DEFAULT_PARTNER_KEY = "sk_partner_test_pslab"
# The published reference's tags, as the emulator names them; `forbidden` lists some of them.
OPERATION_GROUPS = (
    "identity",
    "subscribers",
    "events",
    "keywords",
    "compliance",
    "messages",
    "webhooks",
)

_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# a shop's public key: never valid for the API (docs/design/postscript-api.md#auth)
_PUBLIC_PREFIX = "pk_"


def _same(presented: str, known: str | None) -> bool:
    return known is not None and hmac.compare_digest(presented.encode(), known.encode())


@dataclass(frozen=True)
class Shop:
    id: str
    name: str
    secret_key: str
    public_key: str | None = None
    forbidden: frozenset[str] = frozenset()
    keywords: tuple[Keyword, ...] = DEFAULT_KEYWORDS

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "secret_key": self.secret_key,
            "public_key": self.public_key,
            "forbidden": sorted(self.forbidden),
            "keywords": [{"id": k.id, "keyword": k.keyword} for k in self.keywords],
        }


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    key: str
    forbidden: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "key": self.key,
            "forbidden": sorted(self.forbidden),
        }


@dataclass(frozen=True)
class Tenancy:
    """The shops (the first is the default for admin calls) and the partners."""

    shops: tuple[Shop, ...]
    partners: tuple[Partner, ...] = field(default=())

    @property
    def default_shop(self) -> Shop:
        return self.shops[0]

    def shop(self, shop_id: str) -> Shop | None:
        return next((s for s in self.shops if s.id == shop_id), None)

    def shop_by_key(self, key: str) -> Shop | None:
        return next((s for s in self.shops if _same(key, s.secret_key)), None)

    def shop_by_public_key(self, key: str) -> Shop | None:
        return next((s for s in self.shops if _same(key, s.public_key)), None)

    def partner_by_key(self, key: str) -> Partner | None:
        return next((p for p in self.partners if _same(key, p.key)), None)

    def with_keywords(self, shop_id: str, keywords: tuple[Keyword, ...]) -> Tenancy:
        """The same setting, with the shop `shop_id` holding `keywords`."""
        shops = tuple(replace(s, keywords=keywords) if s.id == shop_id else s for s in self.shops)
        return replace(self, shops=shops)

    def to_json(self) -> dict[str, Any]:
        return {
            "shops": [s.to_json() for s in self.shops],
            "partners": [p.to_json() for p in self.partners],
        }


def default_tenancy(secret_key: str, partner_key: str | None = DEFAULT_PARTNER_KEY) -> Tenancy:
    """One shop answering to `secret_key`, and one partner (unless `partner_key` is None)."""
    shop = Shop(DEFAULT_SHOP_ID, DEFAULT_SHOP_NAME, secret_key, DEFAULT_PUBLIC_KEY)
    partners = (
        () if partner_key is None else (Partner(DEFAULT_PARTNER_ID, "pslab partner", partner_key),)
    )
    return Tenancy((shop,), partners)


class _Reader:
    """Reads `{"shops":[…],"partners":[…]}`, collecting every problem before refusing."""

    def __init__(self) -> None:
        self.problems: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self.ids: set[str] = set()

    def fail(self, loc: list[str | int], msg: str) -> None:
        self.problems.append(problem(["body", *loc], msg, "value_error"))

    def items(self, body: dict[str, Any], name: str, *, required: bool) -> list[Any]:
        value = body.get(name)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (required and not value):
            self.fail([name], f"{name} must be a {'non-empty ' if required else ''}list of objects")
            return []
        return value

    def text(self, item: dict[str, Any], loc: list[str | int], name: str) -> str | None:
        value = item.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.fail([*loc, name], "must be a non-empty string")
            return None
        return value

    def ident(self, item: dict[str, Any], loc: list[str | int]) -> str:
        value = self.text(item, loc, "id")
        if value is None or not _ID.fullmatch(value):
            self.fail([*loc, "id"], "is required: 1 to 100 letters, digits, _ or -")
            return ""
        if value in self.ids:
            self.fail([*loc, "id"], f"{value} is given twice")
        self.ids.add(value)
        return value

    def key(self, item: dict[str, Any], loc: list[str | int], name: str, *, public: bool) -> str:
        value = self.text(item, loc, name)
        if value is None:
            if not public:
                self.fail([*loc, name], "is required")
            return ""
        if value.startswith(_PUBLIC_PREFIX) != public:
            self.fail([*loc, name], f"must {'' if public else 'not '}start with {_PUBLIC_PREFIX}")
        if value in self.keys:
            self.fail([*loc, name], "is already the key of another shop or partner")
        self.keys.add(value)
        return value

    def forbidden(self, item: dict[str, Any], loc: list[str | int]) -> frozenset[str]:
        value = item.get("forbidden") or []
        if not isinstance(value, list) or not all(g in OPERATION_GROUPS for g in value):
            self.fail([*loc, "forbidden"], f"must list some of {', '.join(OPERATION_GROUPS)}")
            return frozenset()
        return frozenset(value)

    def unknown_fields(
        self, item: dict[str, Any], loc: list[str | int], allowed: Iterable[str]
    ) -> None:
        for name in set(item) - set(allowed):
            self.fail([*loc, name], f"unknown field; allowed fields are {', '.join(allowed)}")


_SHOP_FIELDS = ("id", "name", "secret_key", "public_key", "forbidden", "keywords")
_PARTNER_FIELDS = ("id", "name", "key", "forbidden")


def _shop(reader: _Reader, item: Any, loc: list[str | int]) -> Shop | None:
    if not isinstance(item, dict):
        reader.fail(loc, "each shop must be a JSON object")
        return None
    reader.unknown_fields(item, loc, _SHOP_FIELDS)
    shop_id = reader.ident(item, loc)
    public = reader.key(item, loc, "public_key", public=True) or None
    return Shop(
        id=shop_id,
        name=reader.text(item, loc, "name") or shop_id,
        secret_key=reader.key(item, loc, "secret_key", public=False),
        public_key=public,
        forbidden=reader.forbidden(item, loc),
        keywords=_keywords(reader, item, loc, shop_id),
    )


def _keywords(
    reader: _Reader, item: dict[str, Any], loc: list[str | int], shop_id: str
) -> tuple[Keyword, ...]:
    """JOIN and VIP, plus the shop's `keywords` (ids derived from the shop when not given)."""
    if item.get("keywords") is None:
        return DEFAULT_KEYWORDS
    keywords, problems = read_keywords(
        item["keywords"],
        ["body", *loc, "keywords"],
        shop_id=shop_id,
        current=DEFAULT_KEYWORDS,
        created_at=SET_UP,
        adding=False,
    )
    reader.problems.extend(problems)
    return keywords


def _partner(reader: _Reader, item: Any, loc: list[str | int]) -> Partner | None:
    if not isinstance(item, dict):
        reader.fail(loc, "each partner must be a JSON object")
        return None
    reader.unknown_fields(item, loc, _PARTNER_FIELDS)
    partner_id = reader.ident(item, loc)
    return Partner(
        id=partner_id,
        name=reader.text(item, loc, "name") or partner_id,
        key=reader.key(item, loc, "key", public=False),
        forbidden=reader.forbidden(item, loc),
    )


def parse_tenancy(body: dict[str, Any]) -> Tenancy:
    """`PUT /_emulator/shops`: the whole setting, or a 400 naming every problem."""
    reader = _Reader()
    reader.unknown_fields(body, [], ("shops", "partners"))
    shops = [
        _shop(reader, item, ["shops", i])
        for i, item in enumerate(reader.items(body, "shops", required=True))
    ]
    partners = [
        _partner(reader, item, ["partners", i])
        for i, item in enumerate(reader.items(body, "partners", required=False))
    ]
    if reader.problems:
        raise InvalidInput(reader.problems)
    return Tenancy(
        tuple(s for s in shops if s is not None), tuple(p for p in partners if p is not None)
    )
