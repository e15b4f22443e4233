"""Where a contract's request is sent: the emulator (state set up through its
admin surface) or a live shop (state limited to the one test subscriber).

A target turns a contract into an `Exchange`: it sets up what `given` asks
for, binds references such as `subscriber.alice.id`, sends the request and
returns the answer with live phones/emails already mapped back to the
contract's fixtures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from postscript_audience_lab.contracts.contract import Contract, fill
from postscript_audience_lab.sync.pacing import AdaptiveRate, Pacer, Priority

__all__ = ["EmulatorTarget", "Exchange", "LiveTarget", "SkipContract", "Target", "TargetError"]

INVALID_KEY = "sk_invalid_pslab_contract"
# The partner and public key an emulator target sets up for the contracts that need them.
PARTNER = {
    "id": "partner_pslab_contract",
    "name": "pslab contracts",
    "key": "sk_partner_pslab_contract",
}
PUBLIC_KEY = "pk_pslab_contract"
PARTNER_AUTH = ("partner", "partner_without_shop", "public")
NEUTRAL_FAULTS: dict[str, Any] = {
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "latency_ms": [0, 0],
    "rate_limit_rps": 0,
}
RATE_LIMIT_BURST = 20
RATE_LIMIT_ROUNDS = 5


class SkipContract(Exception):
    """This contract cannot run against this target; the message says why."""


class TargetError(Exception):
    """The target cannot be used at all (for instance the test subscriber is missing)."""


@dataclass
class Exchange:
    """One answer to a contract's request, in fixture terms."""

    status: int
    body: Any
    bindings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def replace_strings(value: Any, mapping: Mapping[str, str]) -> Any:
    """`value` with every occurrence of each mapping key replaced inside every string."""
    if isinstance(value, str):
        for old in sorted(mapping, key=len, reverse=True):
            if old:
                value = value.replace(old, mapping[old])
        return value
    if isinstance(value, list):
        return [replace_strings(item, mapping) for item in value]
    if isinstance(value, dict):
        return {
            replace_strings(key, mapping): replace_strings(item, mapping)
            for key, item in value.items()
        }
    return value


async def first_rate_limited(send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """Send bursts until one answer is a 429 (or give up and return the last answer)."""
    last: httpx.Response | None = None
    for _ in range(RATE_LIMIT_ROUNDS):
        answers = await asyncio.gather(*(send() for _ in range(RATE_LIMIT_BURST)))
        for answer in answers:
            if answer.status_code == httpx.codes.TOO_MANY_REQUESTS:
                return answer
        last = answers[-1]
        await asyncio.sleep(0)
    assert last is not None
    return last


class Target:
    """What every target does; `prepare` and `substitutions` differ."""

    kind = "target"
    patient = False  # retry a 429 the harness did not ask for (live shops share one limit)
    cooldown_s = 0.0  # how long a drained rate limit takes to refill

    def __init__(self, client: httpx.AsyncClient, secret_key: str) -> None:
        self.client = client
        self.secret_key = secret_key

    async def start(self) -> None:
        """Called once before the first contract."""

    async def finish(self) -> None:
        """Called once after the last contract."""

    async def prepare(self, contract: Contract) -> dict[str, Any]:
        raise NotImplementedError

    def outgoing(self) -> dict[str, str]:
        """Fixture values to replace in the request (live: fixture phone -> test phone)."""
        return {}

    def incoming(self) -> dict[str, str]:
        """Values to replace in the answer (live: test phone -> fixture phone)."""
        return {}

    def request_body(self, contract: Contract, body: Any) -> tuple[Any, list[str]]:
        return body, []

    async def before_send(self, contract: Contract) -> None:
        """Last step before the request (the emulator turns rate limiting on here)."""

    def headers(self, contract: Contract) -> dict[str, str]:
        auth = contract.request.auth
        if auth == "none":
            return {}
        if auth == "partner":
            return {
                "Authorization": f"Bearer {PARTNER['key']}",
                "X-Postscript-Shop-Token": self.secret_key,
            }
        key = {
            "valid": self.secret_key,
            "partner_without_shop": PARTNER["key"],
            "public": PUBLIC_KEY,
        }.get(auth, INVALID_KEY)
        return {"Authorization": f"Bearer {key}"}

    async def exchange(self, contract: Contract) -> Exchange:
        """Set up, send and answer one contract; raises SkipContract or TargetError."""
        bindings = await self.prepare(contract)
        values = {name: str(value) for name, value in bindings.items()}
        outgoing = self.outgoing()
        path = replace_strings(fill(contract.request.path, values), outgoing)
        params = [
            (key, replace_strings(fill(value, values), outgoing))
            for key, many in contract.request.query.items()
            for value in many
        ]
        body, notes = self.request_body(
            contract, replace_strings(fill(contract.request.json, values), outgoing)
        )
        headers = self.headers(contract)

        bursting = bool(contract.given.get("rate_limit_exceeded"))

        async def send() -> httpx.Response:
            kwargs: dict[str, Any] = {"params": params, "headers": headers}
            if body is not None:
                kwargs["json"] = body
            return await self.client.request(contract.request.method, path, **kwargs)

        async def send_paced() -> httpx.Response:
            for _ in range(RATE_LIMIT_ROUNDS):
                sent_at = await self.pace()
                response = await send()
                if response.status_code != httpx.codes.TOO_MANY_REQUESTS or not self.patient:
                    break
                self.rate_limited(sent_at)
                await asyncio.sleep(self.cooldown_s)
            return response

        await self.before_send(contract)
        if bursting:  # a burst exists to go over the limit, so it is not paced
            response = await first_rate_limited(send)
            await asyncio.sleep(self.cooldown_s)
        else:
            response = await send_paced()
        answer = replace_strings(decode(response), self.incoming())
        return Exchange(response.status_code, answer, bindings, notes)

    async def pace(self) -> float:
        """Wait, if needed, before a request (live shops are paced under their limit); the
        time the request may go."""
        return time.monotonic()

    def rate_limited(self, sent_at: float) -> None:
        """A request sent at `sent_at` was answered 429 (a paced target slows down)."""


class EmulatorTarget(Target):
    """The Postscript emulator, in-process or at a base URL; state set up via `/_emulator`."""

    kind = "emulator"

    def __init__(self, client: httpx.AsyncClient, secret_key: str) -> None:
        super().__init__(client, secret_key)
        self._original_faults: dict[str, Any] | None = None
        self._original_shops: dict[str, Any] | None = None

    async def start(self) -> None:
        answer = await self.client.get("/_emulator/faults")
        if answer.status_code != httpx.codes.OK:
            raise TargetError(
                f"{self.client.base_url} has no emulator admin surface (GET /_emulator/faults "
                f"answered {answer.status_code}); use --live for a real shop"
            )
        self._original_faults = answer.json()
        self._original_shops = await self._admin("GET", "/_emulator/shops")

    async def finish(self) -> None:
        await self._admin("POST", "/_emulator/reset")
        if self._original_faults is not None:
            await self._admin("PUT", "/_emulator/faults", self._original_faults)
        if self._original_shops is not None:
            await self._admin("PUT", "/_emulator/shops", self._original_shops)

    def _contract_shops(self, contract: Contract) -> dict[str, Any]:
        """The emulator's shops, with the contract partner and the key's shop's public key."""
        assert self._original_shops is not None, "start() reads the shops first"
        shops = [
            {**shop, "public_key": PUBLIC_KEY} if shop["secret_key"] == self.secret_key else shop
            for shop in self._original_shops["shops"]
        ]
        partner = {**PARTNER, "forbidden": list(contract.given.get("partner_forbidden", []))}
        return {"shops": shops, "partners": [partner]}

    async def _admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = await self.client.request(method, path, json=body)
        if answer.is_error:
            raise TargetError(f"{method} {path} answered {answer.status_code}: {answer.text[:200]}")
        return decode(answer)

    async def prepare(self, contract: Contract) -> dict[str, Any]:
        await self._admin("POST", "/_emulator/reset")
        await self._admin("PUT", "/_emulator/faults", NEUTRAL_FAULTS)
        await self._admin("PUT", "/_emulator/shops", self._contract_shops(contract))
        bindings: dict[str, Any] = {}
        seeds: list[dict[str, Any]] = []
        refs: list[str] = []
        for item in contract.given.get("subscribers", []):
            body = {k: v for k, v in item.items() if k not in ("ref", "copies")}
            for _ in range(int(item.get("copies", 1))):
                seeds.append(body)
                refs.append(str(item.get("ref", "")))
        if seeds:
            stored = (await self._admin("POST", "/_emulator/subscribers", {"subscribers": seeds}))[
                "subscribers"
            ]
            for ref, subscriber in zip(refs, stored, strict=True):
                if ref:
                    bindings.setdefault(f"subscriber.{ref}.id", subscriber["id"])
        return bindings

    async def before_send(self, contract: Contract) -> None:
        faults = dict(contract.given.get("faults") or {})
        if contract.given.get("rate_limit_exceeded"):
            faults["rate_limit_rps"] = 1
        if faults:
            await self._admin("PUT", "/_emulator/faults", {**NEUTRAL_FAULTS, **faults})


@dataclass
class TestSubscriber:
    id: str
    phone_number: str
    email: str | None


class LiveTarget(Target):
    """A real shop (or an emulator standing in for one): no admin surface, and only
    the subscriber with `test_phone` is ever read or written."""

    kind = "live"
    patient = True
    cooldown_s = 1.2

    def __init__(
        self,
        client: httpx.AsyncClient,
        secret_key: str,
        test_phone: str,
        *,
        allow_flow_events: bool = False,
        rate_limit: float = 10.0,
    ) -> None:
        super().__init__(client, secret_key)
        self.test_phone = test_phone
        self.allow_flow_events = allow_flow_events
        # The engine's own pacer: sends spaced 1/rate apart, slowed down by a 429 it is told of.
        self.pacer = Pacer(AdaptiveRate(rate_limit)) if rate_limit > 0 else None
        self.subscriber: TestSubscriber | None = None
        self._fixtures: dict[str, str] = {}

    async def pace(self) -> float:
        if self.pacer is None:
            return time.monotonic()
        return await self.pacer.acquire(Priority.READ)

    def rate_limited(self, sent_at: float) -> None:
        if self.pacer is not None:
            self.pacer.rate.on_rate_limited(sent_at, time.monotonic())

    async def _patient(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One set-up request, paced, waiting out a 429 a few times."""
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        for _ in range(RATE_LIMIT_ROUNDS):
            sent_at = await self.pace()
            answer = await self.client.request(method, path, headers=headers, **kwargs)
            if answer.status_code != httpx.codes.TOO_MANY_REQUESTS:
                break
            self.rate_limited(sent_at)
            await asyncio.sleep(self.cooldown_s)
        return answer

    async def start(self) -> None:
        answer = await self._patient(
            "GET", "/api/v2/subscribers", params={"phone_number__eq": self.test_phone}
        )
        if answer.status_code == httpx.codes.UNAUTHORIZED:
            raise TargetError(
                "the shop refused POSTSCRIPT_SECRET_KEY (401); set a valid secret key"
            )
        found = (
            decode(answer).get("subscribers", []) if answer.status_code == httpx.codes.OK else []
        )
        if not found:
            raise TargetError(
                f"no subscriber has POSTSCRIPT_TEST_PHONE on this shop (lookup answered "
                f"{answer.status_code}); set it to the phone of a test subscriber you own"
            )
        doc = found[0]
        self.subscriber = TestSubscriber(
            doc["id"], doc["phone_number"] or self.test_phone, doc["email"]
        )

    async def prepare(self, contract: Contract) -> dict[str, Any]:
        if contract.live_skip_reason:
            raise SkipContract(contract.live_skip_reason)
        if contract.given.get("faults"):
            raise SkipContract("faults cannot be injected into a live shop")
        if contract.request.auth in PARTNER_AUTH or contract.given.get("partner_forbidden"):
            raise SkipContract(
                "needs a partner key or the shop's public key; live runs have neither"
            )
        people = contract.given.get("subscribers", [])
        if len(people) > 1 or any(int(p.get("copies", 1)) > 1 for p in people):
            raise SkipContract(
                "needs several subscribers; live runs touch only the test subscriber"
            )
        posts_event = contract.request.method == "POST" and contract.request.path.startswith(
            "/api/v2/events"
        )
        if posts_event and not self.allow_flow_events and "event_type" not in contract.live:
            raise SkipContract(
                "posts an event with no safe `live.event_type`; pass --allow-flow-events"
            )
        self._fixtures = {}
        if not people:
            return {}
        assert self.subscriber is not None, "start() finds the test subscriber first"
        person = people[0]
        if person.get("phone_number"):
            self._fixtures[person["phone_number"]] = self.subscriber.phone_number
        if person.get("email"):
            if self.subscriber.email is None and self._mentions(contract, person["email"]):
                raise SkipContract("the test subscriber has no email to look up")
            if self.subscriber.email is not None:
                self._fixtures[person["email"]] = self.subscriber.email
        if person.get("properties"):
            answer = await self._patient(
                "PATCH",
                f"/api/v2/subscribers/{self.subscriber.id}",
                json={"properties": person["properties"]},
            )
            if answer.is_error:
                raise TargetError(
                    f"could not set up the test subscriber's properties ({answer.status_code})"
                )
        return {f"subscriber.{person.get('ref', 'test')}.id": self.subscriber.id}

    @staticmethod
    def _mentions(contract: Contract, text: str) -> bool:
        request = contract.request
        return text in json.dumps([request.path, request.query, request.json])

    def outgoing(self) -> dict[str, str]:
        return dict(self._fixtures)

    def incoming(self) -> dict[str, str]:
        back = {real: fixture for fixture, real in self._fixtures.items()}
        back[self.secret_key] = "<redacted>"
        return back

    def request_body(self, contract: Contract, body: Any) -> tuple[Any, list[str]]:
        safe_type = contract.live.get("event_type")
        if isinstance(body, dict) and "type" in body and safe_type and not self.allow_flow_events:
            note = f"event type {body['type']!r} was sent as {safe_type!r}, which starts no flow"
            return {**body, "type": safe_type}, [note]
        return body, []
