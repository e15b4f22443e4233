"""How fast the engine sends: an adaptive rate (AIMD) and a paced, prioritised queue of sends.

`AdaptiveRate` is the rate the engine allows itself (docs/design/economy.md#pace). It
starts at the configured ceiling (Postscript's 15 requests/s). A 429 means
someone else is spending the same key's budget: the rate is multiplied by
`DECREASE` (once per congestion event: a 429 answering a request sent before
the latest decrease says nothing new), and it grows back by `INCREASE_PER_S`
each second without one, up to the ceiling: additive increase, multiplicative
decrease, as TCP shares a link. It is pure (the clock is passed in) so its
properties are tested without sleeping.

`Pacer` hands out send slots spaced 1/rate apart, so no one-second window
holds more than the rate, and gives each slot to the most urgent waiter:
lookups and PATCHes (whose reads age while they wait) before event posts.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import anyio

__all__ = ["AdaptiveRate", "Pacer", "Priority"]

DECREASE = 0.8  # on a 429: rate x 0.8
INCREASE_PER_S = 0.05  # requests/s gained per second without a 429
FLOOR_RPS = 0.5  # the rate never goes below this
WINDOW_S = 1.0  # no window this long holds more than rate x WINDOW_S sends
CATCH_UP_SLOTS = 3  # slots missed while busy that may be made up (within the window)


class Priority(IntEnum):
    """Lower goes first."""

    READ = 0  # a lookup: the writes wait for it
    PATCH = 1  # a PATCH: its read ages while it waits
    EVENT = 2  # an event post: nothing waits on it


class AdaptiveRate:
    """Additive increase, multiplicative decrease of a send rate, between a floor and `ceiling`."""

    def __init__(self, ceiling: float, *, now: float = 0.0) -> None:
        if ceiling <= 0:
            raise ValueError("an adaptive rate needs a positive ceiling")
        self.ceiling = ceiling
        self.floor = min(FLOOR_RPS, ceiling)
        # (start, rate at start) per stretch between decreases; the rate grows linearly in each
        self._stretches: list[tuple[float, float]] = [(now, ceiling)]
        self.decreases = 0

    def rate(self, now: float) -> float:
        """The rate allowed at `now`."""
        since, base = self._stretches[-1]
        return min(self.ceiling, base + INCREASE_PER_S * max(0.0, now - since))

    def on_rate_limited(self, sent_at: float, now: float) -> bool:
        """A request sent at `sent_at` met a 429 at `now`; True when the rate went down."""
        if sent_at <= self._stretches[-1][0] and self.decreases:
            return False  # sent before the latest decrease: that 429 was already answered
        self._stretches.append((now, max(self.floor, self.rate(now) * DECREASE)))
        self.decreases += 1
        return True

    def mean(self, start: float, end: float) -> float:
        """The time-average rate allowed between `start` and `end`."""
        if end <= start:
            return self.rate(end)
        area = 0.0
        bounds = [since for since, _ in self._stretches[1:]] + [float("inf")]
        for (since, base), until in zip(self._stretches, bounds, strict=True):
            lo, hi = max(start, since), min(end, until)
            if hi > lo:
                area += self._area(base, lo - since, hi - since)
        return area / (end - start)

    def _area(self, base: float, lo: float, hi: float) -> float:
        """Integral over [lo, hi] (seconds into a stretch) of min(ceiling, base + slope t)."""

        def integral(t: float) -> float:  # from 0 to t
            full = max(0.0, (self.ceiling - base) / INCREASE_PER_S)  # when the ceiling is met
            grow = min(t, full)
            return base * grow + INCREASE_PER_S * grow * grow / 2 + self.ceiling * (t - grow)

        return integral(hi) - integral(lo)


@dataclass(order=True)
class _Waiter:
    priority: int
    ticket: int
    woken: anyio.Event = field(compare=False, default_factory=anyio.Event)


class Pacer:
    """Send slots at most `rate.rate(now)` per second, most urgent waiter first.

    Slots are spaced 1/rate apart. A slot the process was too busy to take on
    time may be made up (up to CATCH_UP_SLOTS of them), but never so that a
    one-second window holds more than the rate. Only the first waiter in line
    watches the clock; the others sleep until they are first.
    """

    def __init__(self, rate: AdaptiveRate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._next_at = -float("inf")  # the earliest time of the next slot
        self._sent: deque[float] = deque()  # slot times within the latest second
        self._queue: list[_Waiter] = []
        self._tickets = itertools.count()

    def hold_until(self, instant: float) -> None:
        """Send nothing before `instant` (a `Retry-After`)."""
        self._next_at = max(self._next_at, instant)

    def ready_at(self, now: float) -> float:
        """The earliest time at or after `now` a slot may be taken."""
        while self._sent and self._sent[0] <= now - WINDOW_S:
            self._sent.popleft()
        at = self._next_at
        if len(self._sent) >= max(1, math.floor(self.rate.rate(now) * WINDOW_S)):
            at = max(at, self._sent[0] + WINDOW_S)
        return max(at, now)

    def take(self, now: float) -> None:
        """Take the slot at `now` (which `ready_at` allowed)."""
        spacing = 1 / self.rate.rate(now)
        late = now - self._next_at  # a slot missed while busy is made up; idle time is not
        self._next_at = (now if late > CATCH_UP_SLOTS * spacing else self._next_at) + spacing
        self._sent.append(now)

    async def acquire(self, priority: Priority) -> float:
        """Wait for a slot; returns the time it was taken."""
        me = _Waiter(int(priority), next(self._tickets))
        heapq.heappush(self._queue, me)
        try:
            while True:
                if self._queue[0] is not me:
                    me.woken = anyio.Event()
                    await me.woken.wait()
                    continue
                now = self._clock()
                at = self.ready_at(now)
                if at <= now:
                    heapq.heappop(self._queue)
                    self.take(now)
                    return now
                me.woken = anyio.Event()
                with anyio.move_on_after(at - now):
                    await me.woken.wait()
        except BaseException:
            if me in self._queue:
                self._queue.remove(me)
                heapq.heapify(self._queue)
            raise
        finally:
            if self._queue:  # the next in line (perhaps new) watches the clock now
                self._queue[0].woken.set()
