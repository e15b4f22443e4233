"""The Postscript REST calls the engine makes, paced, retried and counted.

Pacing is strictly spaced (one request every 1/rate seconds, `sync.pacing`),
so no one-second window ever holds more than `rate` requests and a token
bucket of capacity `rate` on the server side never runs dry; lookups and
PATCHes take the next slot before event posts. The rate adapts: a 429 while
paced means another client spends the same key, so the rate goes down (and
creeps back up while no 429 comes), and the request is sent again at the
lower rate. Retries (stamina: exponential backoff with jitter, `Retry-After`
honoured) cover 5xx, timeouts, connection errors and 429s that persist.
`calls` counts every HTTP attempt, retries included.
"""

from __future__ import annotations

import email.utils
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import stamina

from postscript_audience_lab.sync.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnreachableError,
)
from postscript_audience_lab.sync.pacing import AdaptiveRate, Pacer, Priority

__all__ = ["ENDPOINTS", "PostscriptClient"]

ENDPOINTS = ("me", "subscribers.list", "subscribers.get", "subscribers.patch", "events.create")
RETRY_ATTEMPTS = 8
RETRY_TIMEOUT_S = 120.0
RETRY_WAIT_MAX_S = 10.0
RETRY_AFTER_CAP_S = 60.0
# While paced, a 429 lowers the rate and the request goes again; this many in a row
# for one call and it is left to the retries (and their backoff) instead.
PACED_RATE_LIMITED_TRIES = 20
LATENCY_SMOOTHING = 0.1  # weight of each new answer in the latency average


class PostscriptClient:
    """Async client for the part of Postscript API v2 the engine uses."""

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        rate_limit: float = 15.0,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_forever: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._retry_forever = retry_forever
        # endpoint -> what its latest failed attempt met, while it is being retried
        self.failing: dict[str, str] = {}
        self._secret_key = secret_key
        self._rate_limit = rate_limit
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._pacer: Pacer | None = None
        self.calls: Counter[str] = Counter()
        self.rate_limited = 0  # 429 answers met
        self.latency_s: float | None = None  # moving average of answered requests' latency
        self.first_sent_at: float | None = None  # time.monotonic() of the first request
        self.last_sent_at: float | None = None

    @property
    def paced(self) -> bool:
        return self._pacer is not None

    @property
    def rate(self) -> AdaptiveRate | None:
        """The adaptive rate the client paces at (None when pacing is off)."""
        return self._pacer.rate if self._pacer is not None else None

    def achieved_rps(self) -> float | None:
        """Requests per second between the first request and the last one."""
        sent = sum(self.calls.values())
        first, last = self.first_sent_at, self.last_sent_at
        if first is None or last is None or last <= first or sent < 2:
            return None
        return (sent - 1) / (last - first)

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._secret_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(self._timeout_s),
            transport=self._transport,
        )
        if self._rate_limit > 0:
            self._pacer = Pacer(AdaptiveRate(self._rate_limit, now=time.monotonic()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def me(self) -> dict[str, Any]:
        """`GET /api/v2/me`: who the key belongs to (a cheap key check)."""
        return await self._call("me", "GET", "/api/v2/me", priority=Priority.READ)

    async def find_subscribers(
        self, *, phones: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Subscribers whose phone is in `phones`, then those whose email is in `emails`.

        One query per non-empty filter (Postscript ANDs filters), following every page.
        `__in` values go as repeated parameters (an email may contain a comma).
        """
        found: list[dict[str, Any]] = []
        for field, values in (("phone_number__in", list(phones)), ("email__in", list(emails))):
            if values:
                found.extend(await self._list_all({field: values}))
        return found

    async def list_subscribers(
        self, page: int, *, sort: str = "created_at__asc"
    ) -> tuple[list[dict[str, Any]], int]:
        """One page (100 subscribers) of the whole shop, and the number of pages.

        Oldest first by default, so that a subscriber created while the pages are
        read lands on a later page instead of shifting the earlier ones.
        """
        body = await self._call(
            "subscribers.list",
            "GET",
            "/api/v2/subscribers",
            params={"page": page, "sort": sort},
            priority=Priority.READ,
        )
        total_pages = int((body.get("page_info") or {}).get("total_pages") or 1)
        return list(body.get("subscribers") or []), total_pages

    async def get_subscriber(self, subscriber_id: str) -> dict[str, Any]:
        """`GET /api/v2/subscribers/{id}`."""
        return await self._call(
            "subscribers.get",
            "GET",
            f"/api/v2/subscribers/{subscriber_id}",
            priority=Priority.READ,
        )

    async def patch_subscriber(
        self,
        subscriber_id: str,
        *,
        properties: Mapping[str, Any],
        on_sent: Callable[[float], None] | None = None,
    ) -> dict[str, Any]:
        """`PATCH /api/v2/subscribers/{id}` with `properties` (merged key by key);
        `on_sent` gets the `time.monotonic()` each attempt is sent at."""
        return await self._call(
            "subscribers.patch",
            "PATCH",
            f"/api/v2/subscribers/{subscriber_id}",
            json={"properties": dict(properties)},
            priority=Priority.PATCH,
            on_sent=on_sent,
        )

    async def post_event(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /api/v2/events` (a custom event)."""
        return await self._call(
            "events.create", "POST", "/api/v2/events", json=dict(body), priority=Priority.EVENT
        )

    async def webhook_token(self) -> str:
        """`GET /api/v2/webhooks/token`: what Postscript sends as `Postscript-Signature`."""
        body = await self._call("webhooks.token", "GET", "/api/v2/webhooks/token")
        return str(body["token"])

    async def webhook_subscriptions(self) -> list[dict[str, Any]]:
        """`GET /api/v2/webhooks`: the shop's webhook subscriptions."""
        body = await self._call("webhooks.list", "GET", "/api/v2/webhooks")
        return list(body.get("webhook_subscriptions") or [])

    async def subscribe_webhook(self, event: str, callback_url: str) -> dict[str, Any]:
        """`POST /api/v2/webhooks`: deliver `event` to `callback_url` from now on."""
        body = {"event": event, "callback_url": callback_url}
        return await self._call("webhooks.create", "POST", "/api/v2/webhooks", json=body)

    async def _list_all(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        subscribers: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self._call(
                "subscribers.list",
                "GET",
                "/api/v2/subscribers",
                params={**query, "page": page},
                priority=Priority.READ,
            )
            subscribers.extend(body.get("subscribers") or [])
            total_pages = int((body.get("page_info") or {}).get("total_pages") or 1)
            if page >= total_pages:
                return subscribers
            page += 1

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        priority: Priority = Priority.READ,
        on_sent: Callable[[float], None] | None = None,
    ) -> dict[str, Any]:
        forever = self._retry_forever
        try:
            async for attempt in stamina.retry_context(
                on=_retry_hook,
                attempts=None if forever else RETRY_ATTEMPTS,
                timeout=None if forever else RETRY_TIMEOUT_S,
                wait_max=RETRY_WAIT_MAX_S,
            ):
                with attempt:
                    try:
                        body = await self._send(
                            endpoint,
                            method,
                            path,
                            params=params,
                            json=json,
                            priority=priority,
                            on_sent=on_sent,
                        )
                    except Exception as exc:
                        self.failing[endpoint] = f"attempt {attempt.num}: {_describe_failure(exc)}"
                        raise
                    self.failing.pop(endpoint, None)
                    return body
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise UnreachableError(
                f"{endpoint}: could not reach {self.base_url} ({type(exc).__name__}) "
                "after retries; check --base-url and the network"
            ) from None
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _send(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        priority: Priority,
        on_sent: Callable[[float], None] | None = None,
    ) -> dict[str, Any]:
        assert self._http is not None, "use PostscriptClient as an async context manager"
        for _ in range(PACED_RATE_LIMITED_TRIES):
            sent_at = await self._pacer.acquire(priority) if self._pacer else time.monotonic()
            self.calls[endpoint] += 1
            if self.first_sent_at is None:
                self.first_sent_at = sent_at
            self.last_sent_at = sent_at
            if on_sent is not None:
                on_sent(sent_at)
            response = await self._http.request(method, path, params=params, json=json)
            self._note_latency(time.monotonic() - sent_at)
            if response.status_code != 429:
                break
            self.rate_limited += 1
            if self._pacer is None:
                break
            # Someone else spends this key too: slow down, then send it again.
            self._pacer.rate.on_rate_limited(sent_at, time.monotonic())
            retry_after = _retry_after(response)
            if retry_after:
                self._pacer.hold_until(time.monotonic() + retry_after)
        if response.is_success:
            try:
                body = response.json() if response.content else {}
            except ValueError:  # e.g. a proxy's HTML page: say so, not a JSONDecodeError trace
                text = response.text[:100]
                raise ApiError(response.status_code, f"not JSON: {text!r}", endpoint) from None
            return body if isinstance(body, dict) else {"items": body}
        raise _error_for(endpoint, response)

    def _note_latency(self, seconds: float) -> None:
        previous = self.latency_s
        self.latency_s = (
            seconds if previous is None else previous + LATENCY_SMOOTHING * (seconds - previous)
        )


def _describe_failure(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status}: {exc.message}"
    return type(exc).__name__


def _retry_hook(exc: BaseException) -> bool | float:
    if isinstance(exc, RateLimitedError):
        return exc.retry_after if exc.retry_after is not None else True
    return isinstance(exc, ServerError | httpx.TimeoutException | httpx.TransportError)


def _error_for(endpoint: str, response: httpx.Response) -> ApiError:
    status = response.status_code
    message = _message(response)
    if status in (401, 403):
        return AuthenticationError(
            status, f"{message} (the secret key was refused; check --secret-key)", endpoint
        )
    if status == 404:
        return NotFoundError(status, message, endpoint)
    if 400 <= status < 500 and status != 429:
        # 400, 413, 414, 422 and the like: the same request can never succeed, so it is refused and
        # set aside (docs/design/convergence.md#nothing-lost), never retried ahead of everything
        # else.
        return BadRequestError(status, message, endpoint)
    if status == 429:
        return RateLimitedError(status, message, endpoint, _retry_after(response))
    if status >= 500:
        return ServerError(status, message, endpoint)
    return ApiError(status, message, endpoint)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        for field in ("error_message", "error", "message", "detail"):
            if isinstance(body.get(field), str):
                return str(body[field])
        errors = body.get("errors")
        if isinstance(errors, Sequence) and errors:
            return "; ".join(_describe(error) for error in errors)
    return str(body)[:200]


def _describe(error: object) -> str:
    if isinstance(error, Mapping):
        location = ".".join(str(part) for part in error.get("loc") or [])
        text = str(error.get("msg", error))
        return f"{location}: {text}" if location else text
    return str(error)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)
