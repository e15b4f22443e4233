"""The baseline: a faithful port of the Segment "Postscript (Actions)" destination.

Source: segmentio/action-destinations,
`packages/destination-actions/src/destinations/postscript/` — `index.ts`
(authentication: `Authorization: Bearer <secret key>`), `const.ts`
(`AUDIENCE_PROPERTY = 'Segment Audiences'`) and `syncAudiences/index.ts` (the
only action, subscribed to `type = "identify" or type = "track"`). What it
copies, step by step, for each event on its own:

1. Field mappings (`syncAudiences` `fields`), resolved before `perform`:
   `segment_audience_id` = `context.personas.computation_id`;
   `segment_audience_key` = `context.personas.computation_key` (required);
   `segment_computation_action` = `context.personas.computation_class`
   (required, one of `audience`/`journey_step`, else the event is dropped);
   `email` = `traits.email` if it exists, else `context.traits.email`;
   `phone` = `traits.phone` if it exists, else `context.traits.phone`;
   `traits_or_props` = `properties` if it exists, else `traits` (required).
   A missing required field is a validation failure: the event is dropped.
2. `perform`: `email = email?.trim()` (case kept), `phone =
   phone.replace(/\\D/g, '')` (digits only: `(555) 555-0100` becomes
   `5555550100`). Neither left: `PayloadValidationError`, event dropped.
3. `audienceAction = traits_or_props[audience_key]`, used with JavaScript's
   loose comparisons (`== true`, `== false`) and truthiness (`? :`); the port
   keeps those semantics, so the string `"true"` neither adds nor removes,
   and a missing journey-step value posts `Segment_Audience_Exited`.
4. `GET /api/v2/subscribers?phone_number__eq=<digits>` if there is a phone;
   the first subscriber of the page wins. If none, and there is an email,
   `GET /api/v2/subscribers?email__eq=<email>`; again the first wins.
5. No subscriber: nothing more happens, silently (counted here as
   `dropped_no_subscriber`).
6. `audiences = subscriber.properties["Segment Audiences"] || []` as read by
   the lookup in step 4; if the action is `== true` and the key is absent,
   append it; if `== false` and present, remove it. Only then
   `PATCH /api/v2/subscribers/{id}` with `{"properties": {"Segment Audiences":
   audiences}}` — the whole list as read, so concurrent events for one
   subscriber overwrite each other's changes.
7. Always `POST /api/v2/events` with `type` `Segment_Audience_Entered` if the
   action is truthy else `Segment_Audience_Exited`, `subscriber_id`, and
   properties `Segment Audience ID` / `Segment Audience Key` (no
   `occurred_at`, no `external_id`): every delivery of every event posts one.

What comes from Segment's runtime rather than the action: a failed request
(HTTP error or connection failure) fails the whole event; retryable failures
(408, 429, 5xx, connection errors and timeouts) are retried from step 1, up
to `max_attempts`, with exponential backoff; other failures drop the event.
Both count as `failed` once the event is given up. Events
run one at a time (`workers=1`) or on N concurrent workers, as Segment's
cloud-mode delivery runs them; batches (`{"batch":[…]}`) are split into their
events first, since the action has no batch mode.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "AUDIENCE_PROPERTY",
    "BaselineReport",
    "DestinationPayload",
    "map_event",
    "run_baseline",
    "run_baseline_async",
]

AUDIENCE_PROPERTY = "Segment Audiences"
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_NON_DIGITS = re.compile(r"\D")


@dataclass
class BaselineReport:
    """What the destination did with one stream of events."""

    events_seen: int = 0
    events_processed: int = 0
    dropped_invalid: int = 0
    dropped_no_subscriber: int = 0
    failed: int = 0
    retries: int = 0
    events_posted: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)  # 0 = no response
    wall_s: float = 0.0


@dataclass(frozen=True)
class DestinationPayload:
    """The action's mapped fields (`syncAudiences` `fields`), before `perform`."""

    audience_id: Any
    audience_key: str
    computation_class: str
    email: Any
    phone: Any
    traits_or_props: Mapping[str, Any]


class _Invalid(Exception):
    """The event fails the action's field validation or `PayloadValidationError`."""


class _Retryable(Exception):
    """A request failed in a way Segment retries."""


class _Failed(Exception):
    """A request failed in a way Segment does not retry (a 4xx other than 408/429)."""


def map_event(event: Mapping[str, Any]) -> DestinationPayload:
    """Step 1: resolve the mapping, or raise `_Invalid` as actions-core's validation would."""
    if event.get("type") not in ("identify", "track"):
        raise _Invalid("the action subscribes to identify and track only")
    context = _object(event.get("context"))
    personas = _object(context.get("personas"))
    traits = _object(event.get("traits"))
    context_traits = _object(context.get("traits"))
    key = personas.get("computation_key")
    computation_class = personas.get("computation_class")
    if not isinstance(key, str) or key == "":
        raise _Invalid("segment_audience_key is required")
    if computation_class not in ("audience", "journey_step"):
        raise _Invalid("segment_computation_action must be audience or journey_step")
    values = event.get("properties") if _exists(event.get("properties")) else event.get("traits")
    if not isinstance(values, Mapping):
        raise _Invalid("traits_or_props is required")
    return DestinationPayload(
        audience_id=personas.get("computation_id"),
        audience_key=key,
        computation_class=computation_class,
        email=traits["email"] if _exists(traits.get("email")) else context_traits.get("email"),
        phone=traits["phone"] if _exists(traits.get("phone")) else context_traits.get("phone"),
        traits_or_props=values,
    )


def _exists(value: object) -> bool:
    return value is not None


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _js_number(value: object) -> float:
    """JavaScript's ToNumber for the JSON values an event can carry (NaN when none)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if value is None:
        return math.nan  # undefined; `null == true` is false too, never by number
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(text) if text.lower() not in ("inf", "-inf", "nan") else math.nan
        except ValueError:
            return math.nan
    return math.nan


def _js_loosely_equals(value: object, flag: bool) -> bool:
    """`value == true` / `value == false` in JavaScript."""
    if isinstance(value, bool):
        return value is flag
    if value is None or isinstance(value, Mapping | list):
        return False
    return _js_number(value) == (1.0 if flag else 0.0)


def _js_truthy(value: object) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, Mapping | list):
        return True
    return bool(value)


def _as_string(value: object) -> str | None:
    """The field is typed `string`; anything else fails validation."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid("email and phone must be strings")
    return value


class _Destination:
    def __init__(self, client: httpx.AsyncClient, report: BaselineReport) -> None:
        self.client = client
        self.report = report

    async def _call(self, endpoint: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.report.api_calls[endpoint] += 1
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            self.report.statuses[0] += 1
            raise _Retryable(f"{method} {path}: {error!r}") from error
        self.report.statuses[response.status_code] += 1
        if response.status_code in RETRYABLE_STATUSES:
            raise _Retryable(f"{method} {path}: HTTP {response.status_code}")
        if response.is_error:
            raise _Failed(f"{method} {path}: HTTP {response.status_code}")
        return response

    async def _first_subscriber(self, **query: str) -> Mapping[str, Any] | None:
        response = await self._call("subscribers.list", "GET", "/api/v2/subscribers", params=query)
        subscribers = response.json().get("subscribers") or []
        return subscribers[0] if subscribers else None

    async def perform(self, event: Mapping[str, Any]) -> None:
        payload = map_event(event)
        email = _as_string(payload.email)
        phone = _as_string(payload.phone)
        email = email.strip() if email is not None else None
        phone = _NON_DIGITS.sub("", phone) if phone is not None else None
        if not email and not phone:
            raise _Invalid("Either email or phone is required")
        action = payload.traits_or_props.get(payload.audience_key)

        subscriber = None
        if phone:
            subscriber = await self._first_subscriber(phone_number__eq=phone)
        if subscriber is None and email:
            subscriber = await self._first_subscriber(email__eq=email)
        if subscriber is None:
            self.report.dropped_no_subscriber += 1
            return

        properties = _object(subscriber.get("properties"))
        audiences = list(properties.get(AUDIENCE_PROPERTY) or [])
        present = payload.audience_key in audiences
        update = False
        if _js_loosely_equals(action, True) and not present:
            audiences.append(payload.audience_key)
            update = True
        elif _js_loosely_equals(action, False) and present:
            audiences.remove(payload.audience_key)
            update = True
        subscriber_id = subscriber["id"]
        if update:
            await self._call(
                "subscribers.patch",
                "PATCH",
                f"/api/v2/subscribers/{subscriber_id}",
                json={"properties": {AUDIENCE_PROPERTY: audiences}},
            )

        event_type = "Segment_Audience_Entered" if _js_truthy(action) else "Segment_Audience_Exited"
        event_properties: dict[str, Any] = {"Segment Audience Key": payload.audience_key}
        if payload.audience_id is not None:  # JSON.stringify drops undefined
            event_properties = {"Segment Audience ID": payload.audience_id, **event_properties}
        await self._call(
            "events.create",
            "POST",
            "/api/v2/events",
            json={
                "type": event_type,
                "subscriber_id": subscriber_id,
                "properties": event_properties,
            },
        )
        self.report.events_posted += 1


def _events(items: Iterable[str | Mapping[str, Any]]) -> Iterator[Mapping[str, Any] | None]:
    """Events one by one; batches split; unreadable lines as None."""
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            try:
                item = json.loads(item)
            except json.JSONDecodeError:
                yield None
                continue
        if isinstance(item, Mapping) and "batch" in item and "type" not in item:
            batch = item["batch"]
            yield from (e if isinstance(e, Mapping) else None for e in batch or [])
        else:
            yield item if isinstance(item, Mapping) else None


async def run_baseline_async(
    lines: Iterable[str | Mapping[str, Any]],
    base_url: str,
    secret_key: str,
    workers: int = 1,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    max_attempts: int = 8,
    backoff_s: float = 0.2,
    timeout_s: float = 10.0,
    on_event: Callable[[], None] | None = None,
) -> BaselineReport:
    """Run the destination over `lines` (NDJSON strings or event dicts) with N workers."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    report = BaselineReport()
    started = time.perf_counter()
    source = _events(lines)
    async with httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=timeout_s,
        headers={"Authorization": f"Bearer {secret_key}", "Content-Type": "application/json"},
        limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
    ) as client:
        destination = _Destination(client, report)

        async def worker() -> None:
            # Workers share one plain iterator: `next()` never awaits, so no two
            # workers can be inside it at once.
            for event in source:
                report.events_seen += 1
                await _deliver(destination, event, report, max_attempts, backoff_s)
                if on_event is not None:
                    on_event()

        await asyncio.gather(*(worker() for _ in range(workers)))
    report.wall_s = time.perf_counter() - started
    return report


async def _deliver(
    destination: _Destination,
    event: Mapping[str, Any] | None,
    report: BaselineReport,
    max_attempts: int,
    backoff_s: float,
) -> None:
    if event is None:
        report.dropped_invalid += 1
        return
    for attempt in range(1, max_attempts + 1):
        try:
            await destination.perform(event)
        except _Invalid:
            report.dropped_invalid += 1
            return
        except _Failed:
            report.failed += 1
            return
        except _Retryable:
            if attempt == max_attempts:
                report.failed += 1
                return
            report.retries += 1
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        else:
            report.events_processed += 1
            return


def run_baseline(
    lines: Iterable[str | Mapping[str, Any]],
    base_url: str,
    secret_key: str,
    workers: int = 1,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> BaselineReport:
    """Blocking form of `run_baseline_async` (starts its own event loop)."""
    return asyncio.run(
        run_baseline_async(lines, base_url, secret_key, workers, transport, **options)
    )
