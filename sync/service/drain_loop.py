"""Working the ledger off for as long as the process runs (docs/design/service.md).

No second implementation of the drain: `DrainLoop` calls `Engine.drain` again
whenever there is work, with the engine's guarantees (docs/design/convergence.md) and its pacing
(docs/design/economy.md).
The engine it drives retries each call for ever (`Settings(retry_forever=True)`),
so a Postscript outage holds a drain up rather than failing it, and the stuck
call shows in `Engine.failing`. What still ends a drain:

- a refused key (401/403): the drain pauses until the process is restarted
  with a good key; intake goes on, and the ledger keeps every change;
- anything else (a 4xx the engine does not expect, a full disk): logged, kept
  as `last_error`, and the drain runs again after a backoff that doubles up to
  MAX_BACKOFF_S.

Parked changes wait for a subscriber; they are retried every PARKED_RETRY_S,
not on every drain, so that a steady stream does not look them up again and
again.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

import anyio

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import AuthenticationError
from postscript_audience_lab.sync.service.logs import redact

__all__ = ["DrainLoop", "DrainState"]

log = logging.getLogger("pslab.serve")

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
PARKED_RETRY_S = 300.0
# Wait this long after the first new event before draining, so that one drain
# (and one bulk lookup) takes the events that arrive together.
GATHER_S = 1.0
# Count a new run in the state file this often (`--rejects-out` and the like name a run).
RUN_LENGTH_S = 24 * 3600.0
RATE_WINDOW_S = 60.0


class DrainState(StrEnum):
    OFF = "off"  # started with --no-drain: intake only
    IDLE = "idle"
    DRAINING = "draining"
    BACKING_OFF = "backing off"  # the latest drain failed; it runs again after a wait
    PAUSED = "paused"  # a refused key; restart with a good one


class DrainLoop:
    """Drains `engine` whenever intake stored something new, until cancelled."""

    def __init__(
        self,
        engine: Engine,
        *,
        enabled: bool = True,
        gather_s: float = GATHER_S,
        parked_retry_s: float = PARKED_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.state = DrainState.IDLE if enabled else DrainState.OFF
        self.last_error: str | None = None
        self.last_error_at: str | None = None  # ISO 8601, UTC
        self.paused_because: str | None = None
        self._gather_s = gather_s
        self.parked_retry_s = parked_retry_s
        self._next_unpark: float | None = None
        self._unpark_asked = False
        self._clock = clock
        self._backoff = FIRST_BACKOFF_S
        self._woken = True  # the ledger may hold work from before the start
        self._work: anyio.Event | None = None
        self._waiting_since: float | None = None  # the oldest arrival not known to be settled
        self._arrived_in_drain: float | None = None
        self._run_started = clock()
        self._applied: collections.deque[tuple[float, int]] = collections.deque()
        self._stop_asked = False
        self._between_drains: anyio.Event | None = None  # set when a drain in progress ends

    # -- stopping ------------------------------------------------------------------

    def request_stop(self) -> None:
        """Start no drain from now on; the one under way ends once its calls in flight are
        answered and journaled (`Engine.request_stop`)."""
        self._stop_asked = True
        self.engine.request_stop()
        if self._work is not None:
            self._work.set()

    async def wait_between_drains(self) -> None:
        """Return once no drain is under way: cancelling the loop then interrupts no call."""
        while self._between_drains is not None:
            await self._between_drains.wait()

    # -- what intake and /status see -------------------------------------------

    def wake(self) -> None:
        """New changes were stored (committed): drain soon."""
        now = self._clock()
        if self._waiting_since is None:
            self._waiting_since = now
        if self.state is DrainState.DRAINING and self._arrived_in_drain is None:
            self._arrived_in_drain = now
        self._woken = True
        if self._work is not None:
            self._work.set()

    def unpark_now(self) -> None:
        """A subscriber appeared (Postscript's opt-in webhook): look the parked changes up
        at once, without waiting for the interval or gathering more arrivals."""
        self._unpark_asked = True
        self._woken = True
        if self._work is not None:
            self._work.set()

    def next_parked_retry_in_s(self) -> float | None:
        """Seconds until parked changes are looked up again (None before the loop runs)."""
        if self._next_unpark is None:
            return None
        return max(0.0, self._next_unpark - self._clock())

    def lag_s(self) -> float:
        """How long the oldest acknowledged change not known to be settled has waited."""
        if self._waiting_since is None:
            return 0.0
        return max(0.0, self._clock() - self._waiting_since)

    def rate(self) -> float:
        """Changes applied per second over the last RATE_WINDOW_S."""
        now, applied = self._clock(), self.engine.report.applied
        if not self._applied or now - self._applied[-1][0] >= 1.0:  # a sample a second at most
            self._applied.append((now, applied))
        while len(self._applied) > 2 and now - self._applied[1][0] >= RATE_WINDOW_S:
            self._applied.popleft()
        then, before = self._applied[0]
        return (applied - before) / (now - then) if now > then else 0.0

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Drain whenever there is work; return only when a refused key pauses it."""
        if self.state is DrainState.OFF:
            return
        self.engine.count_leftovers()
        if self.engine.report.pending:
            self._waiting_since = self._clock()  # arrived before this process started
        self._next_unpark = next_unpark = self._clock()
        while self._should_run():
            await self._wait_for_work(until=next_unpark)
            if not self._should_run():
                return
            unpark = self._clock() >= next_unpark or self._unpark_asked
            self._unpark_asked = False
            if unpark:
                self._next_unpark = next_unpark = self._clock() + self.parked_retry_s
            await self._drain_once(unpark=unpark)
            if self._clock() - self._run_started > RUN_LENGTH_S:
                self.engine.next_run()
                self._run_started = self._clock()

    def _should_run(self) -> bool:
        return self.state is not DrainState.PAUSED and not self._stop_asked

    async def _wait_for_work(self, until: float) -> None:
        if not self._woken:
            work = self._work = anyio.Event()
            with anyio.move_on_after(max(0.0, until - self._clock())):
                await work.wait()
            if work.is_set() and not self._unpark_asked:
                await anyio.sleep(self._gather_s)
        self._woken = False

    async def _drain_once(self, *, unpark: bool) -> None:
        self.state = DrainState.DRAINING
        started = self._clock()
        self._arrived_in_drain = None
        before = self.engine.report.applied
        ended = self._between_drains = anyio.Event()
        try:
            try:
                report = await self.engine.drain(unpark=unpark)
            finally:
                self._between_drains = None
                ended.set()
        except AuthenticationError as refused:
            self._pause(refused)
            return
        except Exception as failure:  # a long-running drain must outlive any one failure
            await self._back_off(failure)
            return
        self._backoff = FIRST_BACKOFF_S
        self.state = DrainState.IDLE
        if report.pending == 0:
            self._waiting_since = None
        else:  # what was pending when this drain began is settled; later arrivals may not be
            self._waiting_since = self._arrived_in_drain or started
            self._woken = True
        if report.applied > before:
            log.info(
                "drained",
                extra={
                    "fields": {
                        "applied": report.applied - before,
                        "pending": report.pending,
                        "parked": report.parked,
                        "seconds": round(self._clock() - started, 3),
                    }
                },
            )

    def _pause(self, refused: AuthenticationError) -> None:
        self.state = DrainState.PAUSED
        self.paused_because = (
            f"Postscript refused the secret key (HTTP {refused.status}); intake goes on, "
            "and the drain resumes once the process is restarted with a good key"
        )
        self._note_error(self.paused_because)
        log.error("drain_paused", extra={"fields": {"status": refused.status}})

    async def _back_off(self, failure: Exception) -> None:
        self.state = DrainState.BACKING_OFF
        self._note_error(f"{type(failure).__name__}: {failure}")
        log.error(
            "drain_failed",
            extra={"fields": {"error": self.last_error, "retry_in_s": self._backoff}},
        )
        await anyio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self._woken = True

    def _note_error(self, message: str) -> None:
        self.last_error = redact(message)[:500]
        self.last_error_at = datetime.now(UTC).isoformat(timespec="seconds")
