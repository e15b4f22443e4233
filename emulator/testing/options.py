"""How a test sets up its emulator: one value read from markers, fixture parameters or arguments.

`@pytest.mark.postscript(...)`, an indirect parameter of one of the fixtures
and the keyword arguments of `mock_postscript(...)` all take these names:

| option | default | what it sets |
|---|---|---|
| `secret_key` | `sk_test_pslab` | the key the emulator accepts |
| `rate_limit` | 15 | API requests per second per key, as Postscript allows (0 = off) |
| `subscribers` | none | subscribers to seed, each a dict of `Postscript.seed`'s fields |
| `faults` | none | keyword arguments of `Postscript.faults` |
| `base_url` | `https://api.postscript.io` | which origin `mock_postscript` routes to the emulator |
| `assert_all_mocked` | True | `mock_postscript`: a request for another host fails (as respx) |
| `pass_through` | none | `mock_postscript`: URL prefixes sent to the network as usual |
| `strict` | False | the emulator's strict mode (unknown fields and parameters are 400s) |
| `shops` | one shop | the shops, as `PUT /_emulator/shops` takes them; the first is the default |
| `keywords` | JOIN, VIP | more keywords of the default shop: words, or `{"keyword","id"}` dicts |
| `partners` | one partner | the partners (`[]`: none), as `PUT /_emulator/shops` takes them |
| `auth` | `"shop"` | how `client()`s authenticate: the shop's key, or `"partner"`: the first |
|  |  | partner's key with `X-Postscript-Shop-Token` naming the default shop |
| `webhook_retry_delays` | 300 × 12 | seconds (emulator's clock) between failing delivery attempts |
| `expect_unrouted` | False | refused requests (True: any; or URL prefixes) do not fail teardown |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import httpx

from postscript_audience_lab.emulator.postscript.config import (
    DEFAULT_PARTNER_KEY,
    DEFAULT_SECRET_KEY,
)
from postscript_audience_lab.emulator.postscript.model.shops import DEFAULT_PARTNER_ID
from postscript_audience_lab.emulator.testing.handle import POSTSCRIPT_API, Postscript

__all__ = ["FAULT_OPTIONS", "EmulatorOptions", "OptionError"]

FAULT_OPTIONS = ("error_rate", "error_statuses", "latency_ms", "timeout_rate", "timeout_ms", "seed")


class OptionError(ValueError):
    """An emulator option that is unknown or of the wrong type."""


@dataclass(frozen=True)
class EmulatorOptions:
    secret_key: str = DEFAULT_SECRET_KEY
    rate_limit: float = 15.0
    subscribers: tuple[Mapping[str, Any], ...] = ()
    faults: Mapping[str, Any] = field(default_factory=dict)
    base_url: str = POSTSCRIPT_API
    assert_all_mocked: bool = True
    pass_through: tuple[str, ...] = ()
    strict: bool = False
    shops: tuple[Mapping[str, Any], ...] = ()
    partners: tuple[Mapping[str, Any], ...] | None = None
    keywords: tuple[Mapping[str, Any], ...] = ()
    auth: str = "shop"
    webhook_retry_delays: tuple[float, ...] | None = None
    expect_unrouted: bool | tuple[str, ...] = False

    @classmethod
    def merge(cls, layers: Iterable[Mapping[str, Any]]) -> EmulatorOptions:
        """Options from `layers`, each a mapping of option names; a later layer wins."""
        given: dict[str, Any] = {}
        for layer in layers:
            given |= layer
        known = [option.name for option in fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise OptionError(
                f"unknown Postscript emulator option {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(known)}"
            )
        if "secret_key" in given and given.get("shops"):
            raise OptionError(
                "give either secret_key or shops: with shops, the first shop's secret_key is "
                "the key"
            )
        return cls(**_checked(given))

    def in_process(self) -> Postscript:
        """A fresh in-process emulator built with these options (`set_up` does the rest)."""
        return Postscript.in_process(
            secret_key=self.secret_key,
            rate_limit=self.rate_limit,
            strict=self.strict,
            webhook_retry_delays=self.webhook_retry_delays,
        )

    def tenancy(self) -> dict[str, Any]:
        """The body of `PUT /_emulator/shops` these options ask for."""
        shops = [dict(shop) for shop in self.shops] or [
            {
                "id": "shop_pslab0emulator",
                "name": "pslab emulator",
                "secret_key": self.secret_key,
                "public_key": "pk_test_pslab",
            }
        ]
        if self.keywords:
            first = shops[0]
            first["keywords"] = [*(first.get("keywords") or []), *map(dict, self.keywords)]
        partners = (
            [dict(partner) for partner in self.partners]
            if self.partners is not None
            else [{"id": DEFAULT_PARTNER_ID, "name": "pslab partner", "key": DEFAULT_PARTNER_KEY}]
        )
        return {"shops": shops, "partners": partners}

    def set_up(self, postscript: Postscript) -> None:
        """Give a fresh (or freshly reset) emulator these options' shops and partners, rate
        limit, faults and seed, and its handle's clients the chosen authentication."""
        postscript.set_shops(**self.tenancy())
        postscript.use_auth(self.auth)
        # one admin call for both: it is a request through the app, on every test's setup
        postscript.faults(**self.faults, rate_limit=self.rate_limit)
        if self.subscribers:
            postscript.seed_many(self.subscribers)


def _checked(given: dict[str, Any]) -> dict[str, Any]:
    checked = dict(given)
    if "secret_key" in given and not (isinstance(given["secret_key"], str) and given["secret_key"]):
        raise OptionError("secret_key must be a non-empty string")
    if "rate_limit" in given:
        rate = given["rate_limit"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
            raise OptionError("rate_limit must be requests per second, 0 or more (0 = no limit)")
        checked["rate_limit"] = float(rate)
    if "subscribers" in given:
        checked["subscribers"] = _subscribers(given["subscribers"])
    if "faults" in given:
        checked["faults"] = _faults(given["faults"])
    if "base_url" in given:
        checked["base_url"] = _origin(given["base_url"])
    for name in ("strict",):
        if name in given and not isinstance(given[name], bool):
            raise OptionError(f"{name} must be True or False")
    for name in ("shops", "partners"):
        if name in given:
            checked[name] = _dicts(name, given[name])
    if "shops" in given and not checked["shops"]:
        raise OptionError('shops must name at least one shop, e.g. [{"id": "shop_a", ...}]')
    if "keywords" in given:
        checked["keywords"] = _keywords(given["keywords"])
    if "auth" in given and given["auth"] not in ("shop", "partner"):
        raise OptionError('auth must be "shop" or "partner"')
    if "webhook_retry_delays" in given:
        checked["webhook_retry_delays"] = _delays(given["webhook_retry_delays"])
    if "expect_unrouted" in given:
        checked["expect_unrouted"] = _expected(given["expect_unrouted"])
    if "pass_through" in given:
        prefixes = given["pass_through"]
        if isinstance(prefixes, str) or not all(isinstance(p, str) for p in prefixes):
            raise OptionError(
                'pass_through must be a list of URL prefixes, e.g. ["http://localhost"]'
            )
        checked["pass_through"] = tuple(prefixes)
    return checked


def _expected(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) or not isinstance(value, Iterable):
        value = None
    prefixes = tuple(value) if value is not None else ()
    if value is None or not all(isinstance(prefix, str) for prefix in prefixes):
        raise OptionError(
            'expect_unrouted must be True or a list of URL prefixes, e.g. ["https://hooks.example"]'
        )
    return prefixes


def _subscribers(value: Any) -> tuple[Mapping[str, Any], ...]:
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise OptionError(
            'subscribers must be a list of dicts, e.g. [{"phone_number": "+15555550100"}]'
        )
    items = tuple(value)
    if not all(isinstance(item, Mapping) for item in items):
        raise OptionError('each subscriber must be a dict, e.g. {"phone_number": "+15555550100"}')
    return items


def _dicts(name: str, value: Any) -> tuple[Mapping[str, Any], ...]:
    example = (
        '[{"id": "shop_a", "secret_key": "sk_a"}]'
        if name == "shops"
        else ('[{"id": "partner_p", "key": "sk_partner_p"}]')
    )
    if isinstance(value, Mapping | str) or not isinstance(value, Iterable):
        raise OptionError(f"{name} must be a list of dicts, e.g. {example}")
    items = tuple(value)
    if not all(isinstance(item, Mapping) for item in items):
        raise OptionError(f"{name} must be a list of dicts, e.g. {example}")
    return items


def _keywords(value: Any) -> tuple[Mapping[str, Any], ...]:
    example = '["WELCOME"] or [{"keyword": "WELCOME", "id": "kw_welcome"}]'
    if isinstance(value, Mapping | str) or not isinstance(value, Iterable):
        raise OptionError(f"keywords must be a list of keywords, e.g. {example}")
    items = tuple(value)
    if not all(isinstance(item, Mapping | str) for item in items):
        raise OptionError(f"each keyword must be a word or a dict, e.g. {example}")
    return tuple({"keyword": item} if isinstance(item, str) else item for item in items)


def _delays(value: Any) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise OptionError("webhook_retry_delays must be a list of seconds, e.g. [0.01, 0.01]")
    delays = tuple(value)
    if not all(
        isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d <= 3600 for d in delays
    ):
        raise OptionError("webhook_retry_delays must be seconds from 0 to 3600 each")
    return tuple(float(d) for d in delays)


def _faults(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise OptionError('faults must be a dict, e.g. {"error_rate": 0.5, "seed": 7}')
    unknown = sorted(set(value) - set(FAULT_OPTIONS))
    if unknown:
        raise OptionError(
            f"unknown fault {', '.join(map(repr, unknown))}; "
            f"the faults are {', '.join(FAULT_OPTIONS)}"
        )
    return dict(value)


def _origin(value: Any) -> str:
    """`mock_postscript` routes a whole origin: scheme, host and port, nothing else."""
    url = httpx.URL(value) if isinstance(value, str) else None
    if url is None or not url.host or url.path not in ("", "/") or url.query or url.fragment:
        raise OptionError(f"base_url must be an origin such as {POSTSCRIPT_API}, not {value!r}")
    return str(value).rstrip("/")
