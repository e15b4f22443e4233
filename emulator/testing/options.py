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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import httpx

from emulator.postscript.config import DEFAULT_SECRET_KEY
from emulator.testing.handle import POSTSCRIPT_API, Postscript

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
        return cls(**_checked(given))

    def set_up(self, postscript: Postscript) -> None:
        """Give a fresh (or freshly reset) emulator these options' rate limit, faults and seed."""
        postscript.rate_limit(self.rate_limit)
        postscript.faults(**self.faults)
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
    if "pass_through" in given:
        prefixes = given["pass_through"]
        if isinstance(prefixes, str) or not all(isinstance(p, str) for p in prefixes):
            raise OptionError(
                'pass_through must be a list of URL prefixes, e.g. ["http://localhost"]'
            )
        checked["pass_through"] = tuple(prefixes)
    return checked


def _subscribers(value: Any) -> tuple[Mapping[str, Any], ...]:
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise OptionError(
            'subscribers must be a list of dicts, e.g. [{"phone_number": "+15555550100"}]'
        )
    items = tuple(value)
    if not all(isinstance(item, Mapping) for item in items):
        raise OptionError('each subscriber must be a dict, e.g. {"phone_number": "+15555550100"}')
    return items


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
