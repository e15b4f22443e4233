"""replay: a respx router that answers an httpx client from the contracts.

    with replay("me.rate_limited", "me") as router:
        async with PostscriptClient(DEFAULT_BASE_URL, "sk_test") as client:
            await client.me()          # 429 first, then 200

A request matches a contract on method, path (references filled with the
contract's `refs`), query (order-free; `__in` values may be repeated or
comma-joined; no `page` means page 1) and body shape (same keys, same JSON
types). Contracts with the same request answer in the order they were named;
the last one repeats. Leaving the block raises if a named contract was never
answered or a request matched none, and every answered contract is noted in
`exercised()` so a test session can fail when some contract was never used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import respx

from postscript_audience_lab.contracts.contract import Contract, fill, load_contracts, select
from postscript_audience_lab.contracts.matching import json_type

__all__ = [
    "DEFAULT_BASE_URL",
    "UNMATCHED_STATUS",
    "ContractNotExercised",
    "Expectation",
    "Replay",
    "exercised",
    "replay",
]

DEFAULT_BASE_URL = "https://api.postscript.io"
UNMATCHED_STATUS = 599  # not a status the API uses, so a client never mistakes it for one

_EXERCISED: set[str] = set()


class ContractNotExercised(AssertionError):
    """A replay ended with a contract nobody asked for, or a request no contract matched."""


def exercised() -> set[str]:
    """Names of every contract some replay has answered in this process."""
    return set(_EXERCISED)


def shape(value: Any) -> Any:
    """The JSON shape of a value: keys and types, not contents."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return "number" if json_type(value) in ("integer", "number") else json_type(value)


def normal_query(pairs: Sequence[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    query: dict[str, list[str]] = {}
    for key, value in pairs:
        values = value.split(",") if key.endswith("__in") else [value]
        query.setdefault(key, []).extend(values)
    if query.get("page") == ["1"]:
        del query["page"]
    return {key: tuple(sorted(values)) for key, values in query.items()}


@dataclass
class Expectation:
    """One contract as the replay serves it."""

    contract: Contract
    method: str
    path: str
    query: dict[str, tuple[str, ...]]
    body_shape: Any
    answered: int = 0

    @classmethod
    def of(cls, contract: Contract) -> Expectation:
        request = contract.request
        pairs = [(k, fill(v, contract.refs)) for k, many in request.query.items() for v in many]
        return cls(
            contract=contract,
            method=request.method,
            path=fill(request.path, contract.refs),
            query=normal_query(pairs),
            body_shape=shape(fill(request.json, contract.refs)),
        )

    def matches(self, request: httpx.Request) -> bool:
        if request.method != self.method or request.url.path != self.path:
            return False
        if (
            normal_query(parse_qsl(request.url.query.decode(), keep_blank_values=True))
            != self.query
        ):
            return False
        body = json.loads(request.content) if request.content else None
        return bool(shape(body) == self.body_shape)

    def response(self) -> httpx.Response:
        self.answered += 1
        _EXERCISED.add(self.contract.name)
        answer = self.contract.response
        if answer.body is None:
            return httpx.Response(answer.status)
        return httpx.Response(answer.status, json=answer.body)


@dataclass
class Replay:
    """The contracts one `replay(...)` block serves, and what it saw."""

    expectations: list[Expectation]
    router: respx.MockRouter
    unmatched: list[str] = field(default_factory=list)

    def answer(self, request: httpx.Request) -> httpx.Response:
        candidates = [e for e in self.expectations if e.matches(request)]
        if not candidates:
            self.unmatched.append(f"{request.method} {request.url}")
            known = ", ".join(e.contract.name for e in self.expectations)
            return httpx.Response(
                UNMATCHED_STATUS,
                json={
                    "error": f"no contract in this replay matches the request; it serves {known}"
                },
            )
        waiting = [e for e in candidates if e.answered == 0]
        return (waiting[0] if waiting else candidates[-1]).response()

    def calls(self, name: str) -> int:
        """How many times the contract called `name` was answered."""
        return sum(e.answered for e in self.expectations if e.contract.name == name)

    def check(self) -> None:
        idle = [e.contract.name for e in self.expectations if e.answered == 0]
        problems = []
        if idle:
            problems.append(f"contracts never exercised: {', '.join(idle)}")
        if self.unmatched:
            problems.append(f"requests no contract matched: {'; '.join(self.unmatched)}")
        if problems:
            raise ContractNotExercised("; ".join(problems))


@contextmanager
def replay(
    *names: str,
    base_url: str = DEFAULT_BASE_URL,
    contracts: Sequence[Contract] | None = None,
) -> Iterator[Replay]:
    """Serve the named contracts (all of them when none is named) to any httpx client."""
    pool = list(contracts) if contracts is not None else load_contracts()
    chosen = select(pool, list(names)) if names else pool
    router = respx.MockRouter(base_url=base_url, assert_all_called=False, assert_all_mocked=True)
    served = Replay([Expectation.of(c) for c in chosen], router)
    router.route().mock(side_effect=served.answer)
    with router:
        yield served
    served.check()
