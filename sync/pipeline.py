"""One drain's lookups and writes, flowing together (docs/design/economy.md#pace).

No barrier between the stages: a lookup's subscribers are written as soon as
it answers, while later lookups are made and earlier subscribers' events are
posted. Two gates shape the flow:

- the next lookup starts when few of the subscribers already found are still
  waiting for their PATCH: as many as the pacer sends while a lookup is under
  way (rate x latency, Little's law), so that its answer arrives just as the
  PATCHes before it are sent, and each subscriber is read shortly before its
  PATCH;
- and when fewer than `max_active` subscribers are being written, so that the
  events (sent after the PATCHes) keep up and the journal of unfinished writes
  stays short.

How many requests are in flight follows from the pacer: it sends `rate` a
second, each is answered after the latency, so about rate x latency are out at
once, with no fixed number of workers. Unpaced (rate 0), `workers` subscribers
are written at a time. Writes for one subscriber never overlap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext

import anyio

from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.lookup import Found, Lookup

__all__ = ["Pipeline", "lookup_batch_for"]

# A lookup's subscribers are PATCHed one after another at the paced rate, so the last of
# them is read about batch / rate seconds before its PATCH: the batch is sized to this.
READ_AGE_TARGET_S = 1.2
MIN_LOOKUP_BATCH = 10
ASSUMED_LATENCY_S = 0.3  # until the first answer says otherwise
MAX_ACTIVE_LOOKUPS = 4  # batches' worth of subscribers being written at once (paced)

WriteCallback = Callable[[Found, Callable[[], None]], Awaitable[None]]


def lookup_batch_for(rate: float, most: int) -> int:
    """Values per lookup at `rate` requests/s: at most `most`, few enough for fresh reads."""
    if rate <= 0:
        return most
    return max(min(most, MIN_LOOKUP_BATCH), min(most, math.floor(rate * READ_AGE_TARGET_S)))


class Pipeline:
    """Runs one drain's lookups and writes; `write(found, patched)` must call `patched()`
    once the subscriber's PATCH is sent or known not to be needed.

    A failure (a lookup or a write that ran out of retries) or a `stop()` cancels nothing:
    no new lookup or write starts, the writes under way stop before their
    next call (`stopping`), the calls in flight are answered and journaled,
    and then the first failure is raised. So a failed run leaves no call
    whose outcome the journal does not know (docs/design/convergence.md#nothing-lost)."""

    def __init__(
        self,
        lookup: Lookup,
        client: PostscriptClient,
        write: WriteCallback,
        *,
        workers: int,
        lookup_batch: int,
    ) -> None:
        self._lookup = lookup
        self._client = client
        self._write = write
        self._most = lookup_batch
        self._workers = anyio.CapacityLimiter(max(1, workers))
        self._unpatched = 0  # found, PATCH not yet sent
        self._active = 0  # found, write not yet finished
        self._wake = anyio.Event()
        self._locks: dict[str, anyio.Lock] = {}
        self._failure: Exception | None = None
        self._stop_asked = False

    @property
    def stopping(self) -> bool:
        """A lookup or a write failed, or a stop was asked for: writes under way make no
        further call."""
        return self._failure is not None or self._stop_asked

    def stop(self) -> None:
        """Start nothing new; the calls in flight are answered and journaled, then `run`
        returns (without an error: what is left stays pending or journaled)."""
        self._stop_asked = True
        self._notify()

    async def run(self) -> None:
        batches = self._lookup.resolve()
        async with anyio.create_task_group() as tasks:
            while not self.stopping:
                await self._room_for_a_lookup()
                self._lookup.batch = self._batch()
                try:
                    ready = await anext(batches)
                except StopAsyncIteration:
                    break
                except Exception as failure:
                    self._fail(failure)
                    break
                for found in ready:
                    self._unpatched += 1
                    self._active += 1
                    tasks.start_soon(self._write_one, found)
        await batches.aclose()
        if self._failure is not None:
            raise self._failure

    def _fail(self, failure: Exception) -> None:
        if self._failure is None:
            self._failure = failure
        self._notify()

    def _batch(self) -> int:
        rate = self._client.rate
        return lookup_batch_for(rate.rate(time.monotonic()) if rate else 0.0, self._most)

    def _low_water(self) -> int:
        """Subscribers waiting for their PATCH when the next lookup should start."""
        if not self._client.paced:
            return int(self._workers.total_tokens)
        rate = self._client.rate
        assert rate is not None
        latency = self._client.latency_s or ASSUMED_LATENCY_S
        return math.ceil(rate.rate(time.monotonic()) * latency) + 1

    def _max_active(self) -> int:
        return MAX_ACTIVE_LOOKUPS * self._most

    async def _room_for_a_lookup(self) -> None:
        while not self.stopping and (
            self._unpatched > self._low_water() or self._active > self._max_active()
        ):
            wake = self._wake = anyio.Event()
            await wake.wait()

    async def _write_one(self, found: Found) -> None:
        subscriber_id = str(found.subscriber["id"])
        lock = self._locks.setdefault(subscriber_id, anyio.Lock())
        patched = False

        def on_patched() -> None:
            nonlocal patched
            if not patched:
                patched = True
                self._unpatched -= 1
                self._notify()

        slot: AbstractAsyncContextManager[object] = (
            nullcontext() if self._client.paced else self._workers
        )
        try:
            async with slot, lock:
                if not self.stopping:
                    await self._write(found, on_patched)
        except Exception as failure:
            self._fail(failure)
        finally:
            on_patched()
            self._active -= 1
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(subscriber_id, None)
            self._notify()

    def _notify(self) -> None:
        self._wake.set()
