"""Webhook deliveries: sent in the background, retried with bounded backoff, journaled.

`submit` only queues a delivery and returns, so the API call that caused the
event never waits for a receiver. The sending happens on an event loop of
the dispatcher's own, in a daemon thread started with the first delivery
and ended once nothing is left to send (the app's lifespan, or a reset,
stops it sooner). That loop is independent of whatever hosts the app:
uvicorn, `httpx.ASGITransport` on a test's loop, or several threads at once.

Each delivery is POSTed with `httpx.AsyncClient`; as Postscript documents
("expected_response: 200"), only a 200 delivers it: anything else (a 204
too, or no answer) is retried after each of `retry_delays` in turn, so it
makes at most `len(retry_delays) + 1` attempts, every one recorded in the
journal (`GET /_emulator/webhooks/deliveries`). The default schedule is
Postscript's, every 5 minutes for an hour, due on the emulator's clock: a
test moves the clock (`POST /_emulator/clock`, which returns once the
retries due by then were attempted), or calls `flush()`, which plays every
schedule out at once, moving the clock to each retry's time, and returns
once every delivery is delivered or has failed (docs/design/emulator.md).
`FAST_RETRY_DELAYS_S` is the emulator's earlier seconds-long schedule.
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
from datetime import datetime, timedelta
from typing import Any

import httpx

from postscript_audience_lab.emulator.postscript.model.clock import Clock
from postscript_audience_lab.emulator.postscript.model.subscriber import format_time, utc_now

__all__ = [
    "DEFAULT_RETRY_DELAYS_S",
    "DELIVERED",
    "FAST_RETRY_DELAYS_S",
    "POSTSCRIPT_RETRY_DELAYS_S",
    "USER_AGENT",
    "Attempt",
    "Delivery",
    "WebhookDispatcher",
]

# Postscript retries every 5 minutes for up to an hour, and so does the emulator, on its own
# clock; the short doubling backoff it used before plays out in seconds of real time.
POSTSCRIPT_RETRY_DELAYS_S = (300.0,) * 12
DEFAULT_RETRY_DELAYS_S = POSTSCRIPT_RETRY_DELAYS_S
FAST_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
DELIVERED = 200  # the webhooks page's `expected_response`
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
    # On the emulator's clock, while waiting to retry; None while queued or being sent.
    next_attempt_at: datetime | None = None

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
            "next_attempt_at": (
                format_time(self.next_attempt_at) if self.next_attempt_at is not None else None
            ),
        }


_OURS = frozenset({"content-type", "postscript-signature", "user-agent"})


class WebhookDispatcher:
    def __init__(
        self,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S,
        timeout_s: float = 10.0,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.retry_delays = retry_delays
        self.clock = clock or Clock()
        self.clock.on_advance(lambda: self._signal("tick"))
        self.timeout_s = timeout_s
        self._transport = transport
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._journal: deque[Delivery] = deque(maxlen=MAX_JOURNAL)
        self._queue: deque[Delivery] = deque()
        self._pending: dict[str, Delivery] = {}
        self._unfinished = 0
        self._hurrying = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._tick: asyncio.Event | None = None
        self._stopping = False

    # -- called from any thread ----------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery; it is sent in the background, never on the caller's time."""
        with self._lock:
            self._journal.append(delivery)
            self._queue.append(delivery)
            self._pending[delivery.id] = delivery
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

    def catch_up(self, timeout_s: float = 60.0) -> bool:
        """Wait until every attempt due by the clock's time has been made (after the clock
        moved); False if `timeout_s` ran out first."""

        def caught_up() -> bool:
            now = self.clock.now()
            return all(
                d.next_attempt_at is not None and d.next_attempt_at > now
                for d in self._pending.values()
            )

        with self._lock:
            return self._settled.wait_for(caught_up, timeout=timeout_s)

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
            self._pending.clear()
            self._unfinished = 0
            self._settled.notify_all()

    def clear(self) -> None:
        """Stop, and forget the journal."""
        self.stop()
        with self._lock:
            self._journal.clear()

    def _signal(self, what: str) -> None:
        with self._lock:
            self._call_in_loop(what)

    def _call_in_loop(self, what: str) -> None:
        """Signal the loop (lock held): wake it, start or stop skipping the waits, or tell
        the waits that the clock moved."""
        loop, wake, hurry = self._loop, self._wake, self._hurry
        if loop is None or wake is None or hurry is None:
            return
        action = {"wake": wake.set, "hurry": hurry.set, "calm": hurry.clear, "tick": self._ticked}[
            what
        ]
        # RuntimeError: the loop has just closed, its thread is on its way out
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(action)

    def _ticked(self) -> None:
        """(In the loop.) Wake every wait, to look at the clock again."""
        if self._tick is not None:
            self._tick.set()
            self._tick = asyncio.Event()

    # -- the background thread -----------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake, self._hurry = asyncio.Event(), asyncio.Event()
            self._tick = asyncio.Event()
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
                if attempt.status == DELIVERED:
                    self._finish(delivery, "delivered", attempt)
                    return
                if number > len(self.retry_delays):
                    self._finish(delivery, "failed", attempt)
                    return
                due = attempt.at + timedelta(seconds=self.retry_delays[number - 1])
                with self._lock:
                    delivery.attempts.append(attempt)
                    delivery.next_attempt_at = due
                    self._settled.notify_all()
                await self._pause(due)
                with self._lock:
                    delivery.next_attempt_at = None
        except asyncio.CancelledError:
            self._finish(delivery, "cancelled")
            raise

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: Delivery, content: bytes, number: int
    ) -> Attempt:
        started, at = time.perf_counter(), self.clock.now()
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

    async def _pause(self, due: datetime) -> None:
        """Wait until the clock reaches `due` (real time passing, or the clock moved); when
        hurried, move the clock there at once."""
        while True:
            assert self._hurry is not None
            assert self._tick is not None
            if self._hurry.is_set():
                self.clock.advance_to(due)
                return
            remaining = (due - self.clock.now()).total_seconds()
            if remaining <= 0:
                return
            waits = {
                asyncio.create_task(self._hurry.wait()),
                asyncio.create_task(self._tick.wait()),
            }
            try:
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    def _finish(self, delivery: Delivery, state: str, attempt: Attempt | None = None) -> None:
        with self._lock:
            if attempt is not None:
                delivery.attempts.append(attempt)
            if delivery.state == "pending":
                delivery.state = state
                self._unfinished -= 1
            self._pending.pop(delivery.id, None)
            self._settled.notify_all()
