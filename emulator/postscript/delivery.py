"""Webhook deliveries: sent in the background, retried with bounded backoff, journaled.

`submit` only queues a delivery and returns, so the API call that caused the
event never waits for a receiver. The sending happens on an event loop of
the dispatcher's own, in a daemon thread started with the first delivery
and ended once nothing is left to send (the app's lifespan, or a reset,
stops it sooner). That loop is independent of whatever hosts the app:
uvicorn, `httpx.ASGITransport` on a test's loop, or several threads at once.

Each delivery is POSTed with `httpx.AsyncClient`; a 2xx answer delivers it,
anything else (or no answer) is retried after each of `retry_delays` in turn,
so it makes at most `len(retry_delays) + 1` attempts, every one recorded in
the journal (`GET /_emulator/webhooks/deliveries`). `flush()` skips the
remaining waits and returns once every delivery is delivered or has failed,
which is how tests wait for webhooks without sleeping (docs/design.md §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from postscript_audience_lab.emulator.postscript.subscriber import format_time, utc_now

__all__ = [
    "DEFAULT_RETRY_DELAYS_S",
    "POSTSCRIPT_RETRY_DELAYS_S",
    "USER_AGENT",
    "Attempt",
    "Delivery",
    "WebhookDispatcher",
]

# Postscript retries every 5 minutes for up to an hour; the emulator's default is a short
# doubling backoff so that a local receiver's failures play out in seconds (design §2.8).
POSTSCRIPT_RETRY_DELAYS_S = (300.0,) * 12
DEFAULT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
USER_AGENT = "pslab-emulator (Postscript webhooks)"
MAX_JOURNAL = 10_000


@dataclass(frozen=True)
class Attempt:
    number: int
    at: datetime
    status: int | None  # None: no answer (connection refused, timeout, ...)
    error: str | None
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "time": format_time(self.at),
            "status": self.status,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass
class Delivery:
    """One event on its way to one subscription's callback URL."""

    shop_id: str
    webhook_id: str
    callback_url: str
    payload: dict[str, Any]
    headers: dict[str, str]  # every header sent, the signature included: never journaled
    id: str = field(default_factory=lambda: f"wd_{uuid.uuid4().hex[:24]}")
    created_at: datetime = field(default_factory=utc_now)
    state: str = "pending"  # then "delivered", "failed" or "cancelled"
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def event(self) -> str:
        return str(self.payload["event"])

    def to_json(self) -> dict[str, Any]:
        custom = sorted(k for k in self.headers if k.lower() not in _OURS)
        return {
            "id": self.id,
            "shop": self.shop_id,
            "webhook_id": self.webhook_id,
            "event": self.event,
            "callback_url": self.callback_url,
            "custom_headers": custom,
            "payload": self.payload,
            "created_at": format_time(self.created_at),
            "state": self.state,
            "attempts": [attempt.to_json() for attempt in self.attempts],
        }


_OURS = frozenset({"content-type", "postscript-signature", "user-agent"})


class WebhookDispatcher:
    def __init__(
        self,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S,
        timeout_s: float = 10.0,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.retry_delays = retry_delays
        self.timeout_s = timeout_s
        self._transport = transport
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._journal: deque[Delivery] = deque(maxlen=MAX_JOURNAL)
        self._queue: deque[Delivery] = deque()
        self._unfinished = 0
        self._hurrying = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._stopping = False

    # -- called from any thread ----------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery; it is sent in the background, never on the caller's time."""
        with self._lock:
            self._journal.append(delivery)
            self._queue.append(delivery)
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pslab-webhooks", daemon=True
                )
                self._thread.start()
            else:
                self._call_in_loop("wake")

    def deliveries(self, shop_id: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._journal if shop_id is None or d.shop_id == shop_id]

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Send what is pending without waiting out the backoff; False if `timeout_s` ran out."""
        with self._lock:
            self._hurrying += 1
            self._call_in_loop("hurry")
            try:
                return self._settled.wait_for(lambda: self._unfinished == 0, timeout=timeout_s)
            finally:
                self._hurrying -= 1
                if self._hurrying == 0:
                    self._call_in_loop("calm")

    def stop(self) -> None:
        """Cancel every pending delivery and end the background thread."""
        with self._lock:
            thread = self._thread
            self._stopping = True
            self._call_in_loop("wake")
        if thread is not None:
            thread.join(timeout=30)
        with self._lock:
            self._stopping = False
            for delivery in self._queue:
                delivery.state = "cancelled"
            self._queue.clear()
            self._unfinished = 0
            self._settled.notify_all()

    def clear(self) -> None:
        """Stop, and forget the journal."""
        self.stop()
        with self._lock:
            self._journal.clear()

    def _call_in_loop(self, what: str) -> None:
        """Signal the loop (lock held): wake it, or start or stop skipping the waits."""
        loop, wake, hurry = self._loop, self._wake, self._hurry
        if loop is None or wake is None or hurry is None:
            return
        action = {"wake": wake.set, "hurry": hurry.set, "calm": hurry.clear}[what]
        # RuntimeError: the loop has just closed, its thread is on its way out
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(action)

    # -- the background thread -----------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake, self._hurry = asyncio.Event(), asyncio.Event()
            if self._hurrying:
                self._hurry.set()
        transport = self._transport() if self._transport is not None else None
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(
            timeout=self.timeout_s, transport=transport, follow_redirects=False
        ) as client:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                    batch = list(self._queue)
                    self._queue.clear()
                    if not batch and not tasks:
                        self._thread = self._loop = self._wake = self._hurry = None
                        return
                for delivery in batch:
                    tasks.add(asyncio.create_task(self._deliver(client, delivery)))
                self._wake.clear()
                waker = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait({*tasks, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                tasks -= done
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with self._lock:
            self._thread = self._loop = self._wake = self._hurry = None

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        content = json.dumps(delivery.payload, separators=(",", ":")).encode()
        try:
            for number in range(1, len(self.retry_delays) + 2):
                attempt = await self._attempt(client, delivery, content, number)
                with self._lock:
                    delivery.attempts.append(attempt)
                if attempt.status is not None and 200 <= attempt.status < 300:
                    self._finish(delivery, "delivered")
                    return
                if number > len(self.retry_delays):
                    self._finish(delivery, "failed")
                    return
                await self._pause(self.retry_delays[number - 1])
        except asyncio.CancelledError:
            self._finish(delivery, "cancelled")
            raise

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: Delivery, content: bytes, number: int
    ) -> Attempt:
        started, at = time.perf_counter(), utc_now()
        status: int | None = None
        error: str | None = None
        try:
            answer = await client.post(
                delivery.callback_url, content=content, headers=delivery.headers
            )
            status = answer.status_code
        # Any failure is this attempt's answer (an HTTP mock in the test process may refuse
        # the request with its own exception): it must never end the delivery unrecorded.
        except Exception as problem:
            error = (
                f"{type(problem).__name__}: {problem}" if str(problem) else type(problem).__name__
            )
        return Attempt(number, at, status, error, (time.perf_counter() - started) * 1000)

    async def _pause(self, seconds: float) -> None:
        assert self._hurry is not None
        if self._hurry.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), timeout=seconds)

    def _finish(self, delivery: Delivery, state: str) -> None:
        with self._lock:
            if delivery.state == "pending":
                delivery.state = state
                self._unfinished -= 1
                self._settled.notify_all()
