"""The engine: Segment events in, converged Postscript membership out.

`ingest` streams events through the parser into the ledger (bounded memory,
batched transactions). `drain` then works the ledger off:

1. check the state file belongs to the key's shop (one `GET /me`);
2. finish writes a crashed run journaled but did not confirm
   (docs/design/convergence.md#nothing-lost);
3. make parked changes pending again;
4. find the pending identities' subscribers in bulk (`sync.lookup`), just in
   time, and as each lookup answers, plan each subscriber it found over all
   its pending changes (`sync.plan`) and for each: journal the write, PATCH,
   post the events, settle. Lookups and writes flow together
   (`sync.pipeline`), all through the one paced client.

Writes for one subscriber never overlap."""

from __future__ import annotations

import statistics
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import anyio
import httpx

from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.errors import BadRequestError, NotFoundError, StateMismatchError
from postscript_audience_lab.sync.ledger import (
    IngestCounts,
    Intent,
    Ledger,
    Outcome,
    RejectionLimits,
    Status,
    copy_state,
    hold_lock,
)
from postscript_audience_lab.sync.lookup import Found, Lookup
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, parse_line, parse_payload
from postscript_audience_lab.sync.pipeline import Pipeline
from postscript_audience_lab.sync.plan import Plan, plan_subscriber
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.settings import Settings

__all__ = ["Engine", "PlanCallback", "ProgressCallback"]

ProgressCallback = Callable[[str, int, int | None], None]
PlanCallback = Callable[[Plan], None]
INGEST_SLICE = 5000
OPT_IN_EVENT = "shop.subscriber.opt_in"  # Postscript's webhook when a subscriber opts in
# Events dated further ahead than this of the run's clock are clock errors
# (docs/design/events.md#version):
# as the newest version they would pin a membership for as long as the date is ahead.
MAX_CLOCK_AHEAD = timedelta(days=1)
READ_AGES_KEPT = 100_000  # the latest reads' ages to their PATCHes, for the report
SETTLING_S = 10.0  # the adaptive rate's mean is taken after this much of a drain
PROGRESS_RECOUNT = 500  # writes between two counts of the subscribers found so far


class Engine:
    """One engine over one state file; use as a context manager (it holds the state lock)."""

    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        on_plan: PlanCallback | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._on_plan = on_plan
        self._progress = progress
        self.report = Report(lookup_batch=settings.lookup_batch, dry_run=settings.dry_run)
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._lock: IO[bytes] | None = None
        self._shop_checked = False
        self._run_id: int | None = None
        self._latest_client: PostscriptClient | None = None
        self._read_ages: deque[float] = deque(maxlen=READ_AGES_KEPT)
        self._pipeline: Pipeline | None = None
        self._stop_asked = False
        self.ledger = self._open_ledger()
        self._dropped_before = self.ledger.counts().rejections_dropped

    @property
    def run_id(self) -> int:
        """This run's number in the state file, taken when the run first stores something."""
        if self._run_id is None:
            self._run_id = self.ledger.start_run()
        return self._run_id

    def next_run(self) -> None:
        """Count what is stored from now on as a new run (a long-running process does so now
        and then: `--rejects-out` and the like name a run's rejections by its number)."""
        self._run_id = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.ledger.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
        if self._scratch is not None:
            self._scratch.cleanup()

    def _open_ledger(self) -> Ledger:
        path = Path(self.settings.state_path)
        limits = RejectionLimits(self.settings.keep_rejections, self.settings.keep_rejection_bytes)
        if not self.settings.dry_run:
            return Ledger(path, limits).__enter__()
        # A dry run works on a copy, so that it writes nothing, not even the state file.
        self._lock = hold_lock(path, create=False)
        self._scratch = tempfile.TemporaryDirectory(prefix="pslab-dry-run-")
        copy = Path(self._scratch.name) / "state.sqlite"
        copy_state(path, copy)
        return Ledger(copy, limits).__enter__()

    # -- ingest ---------------------------------------------------------------

    def ingest(self, source: Iterable[str | Mapping[str, Any] | Rejection]) -> IngestCounts:
        """Parse and store events: NDJSON lines (str), event / batch objects, or rejections
        made before parsing (such as `sync.source`'s for an oversized line).

        Call `check_shop` first when the state file may already hold another shop's work:
        ingest stores what it reads.
        """
        total = IngestCounts()
        region = self.settings.default_region
        not_after = datetime.now(UTC) + MAX_CLOCK_AHEAD
        results: list[AudienceChange | Rejection] = []
        for line_no, item in enumerate(source, start=1):
            if isinstance(item, str):
                results.extend(
                    parse_line(item, line_no, default_region=region, not_after=not_after)
                )
            elif isinstance(item, Rejection):
                results.append(item)
            else:
                results.extend(
                    parse_payload(item, line_no, default_region=region, not_after=not_after)
                )
            if len(results) >= INGEST_SLICE:
                self._record(results, total)
                results = []
        self._record(results, total)
        return total

    def ingest_body(self, body: object) -> list[tuple[AudienceChange | Rejection, Outcome]]:
        """Parse and store one decoded request body: an event, a `{"batch":[…]}` or a list of events
        (docs/design/service.md). Committed and synced to disk when it returns; what became of each
        event, in order."""
        payload = {"batch": body} if isinstance(body, list) else body
        not_after = datetime.now(UTC) + MAX_CLOCK_AHEAD
        region = self.settings.default_region
        results = list(parse_payload(payload, default_region=region, not_after=not_after))
        outcomes: list[Outcome] = []
        with self.ledger.synced_commits():  # its sender is about to be told it is stored
            self._record(results, IngestCounts(), outcomes)
        return list(zip(results, outcomes, strict=True))

    def ingest_changes(self, results: Iterable[AudienceChange | Rejection]) -> IngestCounts:
        """Store changes made elsewhere than from a Segment event (a snapshot's rows, by
        `sync.reconcile`), and rejections, exactly as parsed events are stored."""
        total = IngestCounts()
        batch: list[AudienceChange | Rejection] = []
        for result in results:
            batch.append(result)
            if len(batch) >= INGEST_SLICE:
                self._record(batch, total)
                batch = []
        self._record(batch, total)
        return total

    def _record(
        self,
        results: list[AudienceChange | Rejection],
        total: IngestCounts,
        outcomes: list[Outcome] | None = None,
    ) -> None:
        if not results:
            return
        counts = self.ledger.record(results, self.run_id, outcomes)
        for name in ("received", "duplicates", "stale", "rejected", "accepted"):
            value = getattr(counts, name)
            setattr(total, name, getattr(total, name) + value)
            setattr(self.report, name, getattr(self.report, name) + value)
        if self._progress is not None:
            self._progress("ingest", self.report.received, None)

    def rejections(self) -> Iterable[dict[str, Any]]:
        """This run's rejected events (and changes Postscript refused), with reasons."""
        if self._run_id is None:
            return ()
        return self.ledger.rejections(self._run_id)

    # -- drain ----------------------------------------------------------------

    def run(self, source: Iterable[str | Mapping[str, Any] | Rejection] = ()) -> Report:
        """Blocking helper: check the shop, ingest `source`, then drain."""
        anyio.run(self.check_shop)
        self.ingest(source)
        return anyio.run(self.drain)

    def _new_client(self) -> PostscriptClient:
        settings = self.settings
        self._latest_client = PostscriptClient(
            settings.base_url,
            settings.secret_key,
            rate_limit=settings.rate_limit,
            timeout_s=settings.timeout_s,
            transport=self._transport,
            retry_forever=settings.retry_forever,
        )
        return self._latest_client

    @property
    def failing(self) -> dict[str, str]:
        """The calls the latest drain (or shop check) retried without success so far, with
        what their latest attempt met; empty once each has succeeded (docs/design/commands.md)."""
        client = self._latest_client
        return dict(client.failing) if client is not None else {}

    async def check_shop(self) -> None:
        """Make sure the state file serves the key's shop, before anything is stored in it.

        One `GET /me`. A state file filled for another shop is refused with
        `StateMismatchError`, and nothing in it changes.
        """
        if self._shop_checked:
            return
        async with self._session():
            await self._check_shop()

    async def subscribe_to_opt_ins(self, callback_url: str) -> str:
        """Have Postscript post `shop.subscriber.opt_in` to `callback_url` (once: an existing
        subscription to it is kept) and return the token its deliveries are signed with."""
        async with self._session() as client:
            token = await client.webhook_token()
            subscribed = await client.webhook_subscriptions()
            if not any(
                item.get("event") == OPT_IN_EVENT and item.get("callback_url") == callback_url
                for item in subscribed
            ):
                await client.subscribe_webhook(OPT_IN_EVENT, callback_url)
        return token

    async def drain(self, *, unpark: bool = True) -> Report:
        """Write every pending change to Postscript; returns the run's report.

        `unpark=False` leaves parked changes parked (a process that drains often retries
        them now and then, not on every drain).
        """
        try:
            async with self._session() as client:
                try:
                    if self._stop_asked or not self.ledger.has_work():
                        return self.report
                    await self._check_shop()
                    await self._resume()
                    if unpark:
                        self.report.unparked += self.ledger.unpark()
                    await self._work_off_pending()
                finally:
                    self._report_pace(client)
        finally:
            self.count_leftovers()
        return self.report

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[PostscriptClient]:
        """A client for one exchange with Postscript (the one `self._client` names), its calls
        added to the report however the exchange ends."""
        client = self._new_client()
        try:
            async with client:
                self._client = client
                yield client
        finally:
            self.report.api_calls.update(client.calls)

    def _report_pace(self, client: PostscriptClient) -> None:
        report = self.report
        report.rate_limited += client.rate_limited
        achieved = client.achieved_rps()
        if achieved is not None:
            report.requests_per_s = round(achieved, 2)
        rate, first = client.rate, client.first_sent_at
        if rate is not None and first is not None and client.last_sent_at is not None:
            settled = rate.mean(first + SETTLING_S, client.last_sent_at)
            report.settled_rate = round(settled, 2)
        ages = sorted(self._read_ages)
        if ages:
            p99 = (
                statistics.quantiles(ages, n=100, method="inclusive")[98]
                if len(ages) > 1
                else ages[0]
            )
            report.read_to_patch_s = {
                "p50": round(statistics.median(ages), 3),
                "p99": round(p99, 3),
                "max": round(ages[-1], 3),
            }

    async def _check_shop(self) -> None:
        """One `me` call: a state file serves one shop (its messageIds mean nothing elsewhere)."""
        if self._shop_checked:
            return
        shop = str((await self._client.me()).get("resource_id") or "")
        known = self.ledger.meta("shop")
        if known and shop and known != shop:
            raise StateMismatchError(
                f"the state file {self.settings.state_path} belongs to shop {known}, "
                f"but the key is for shop {shop}; pass another --state"
            )
        if shop and not known:
            self.ledger.set_meta("shop", shop)
        self._shop_checked = True

    @property
    def shop_checked(self) -> bool:
        """Whether this run has made sure the state file serves the key's shop."""
        return self._shop_checked

    def count_leftovers(self, *, identities: bool = True) -> None:
        """Put the changes still parked or pending in the state file into the report, and
        the rejections dropped to keep within the limits since the engine opened it.

        Read from the ledger's counters; the parked identities (`identities=True`) are
        counted from the rows, so a caller that polls (`/status`) leaves them out.
        """
        counts = self.ledger.counts()
        self.report.parked = counts.by_status[Status.PARKED]
        if identities:
            self.report.parked_identities = self.ledger.parked_identities()
        # A change being written keeps its pending row until its write is settled, so the
        # rows count it once; its journaled write is reported beside it, not added to it.
        self.report.pending = counts.by_status[Status.PENDING]
        self.report.journaled = counts.intents
        self.report.rejections_dropped = counts.rejections_dropped - self._dropped_before

    async def _resume(self) -> None:
        for intent in self.ledger.unfinished_intents():
            if self._stop_asked:
                return  # still journaled: the next drain finishes it
            if self.settings.dry_run:  # finished in the scratch copy only, so the counts add up
                self.ledger.settle(
                    intent.subscriber_id, intent.winners, intent.superseded, intent.id
                )
            else:
                await self._finish(intent)
            self.report.resumed += 1

    async def _finish(self, intent: Intent) -> None:
        """Complete a journaled write: the PATCH is recomputed from a fresh read (idempotent)."""
        if intent.patch is not None and not intent.patched:
            try:
                fresh = await self._client.get_subscriber(intent.subscriber_id)
            except NotFoundError:
                # The subscriber is gone: its changes are still pending and will park.
                self.ledger.abandon_intent(intent.id)
                return
            redo = plan_subscriber(fresh, intent.winners, post_events=False)
            if redo.patch_properties is not None:
                try:
                    await self._client.patch_subscriber(
                        intent.subscriber_id, properties=redo.patch_properties
                    )
                except BadRequestError as refused:  # else every later run would stop here
                    self._refuse_write(
                        intent.id, intent.subscriber_id, intent.winners, intent.superseded, refused
                    )
                    return
            self.ledger.mark_patched(intent.id)
        for seq, body, posted in intent.events:
            if self._stop_asked:
                return
            if not posted:
                await self._post(intent.id, seq, body)
        self.ledger.settle(intent.subscriber_id, intent.winners, intent.superseded, intent.id)

    async def _post(self, intent_id: int, seq: int, body: Mapping[str, Any]) -> None:
        try:
            await self._client.post_event(body)
        except (BadRequestError, NotFoundError) as refused:
            reason = f"Postscript refused the event: {refused.message}"
            self.ledger.record_refusal(body, reason, self.run_id)
            self.report.refused += 1
        else:
            self.report.events_posted += 1
        self.ledger.mark_posted(intent_id, seq)

    async def _work_off_pending(self) -> None:
        """Look the pending identities up just in time; write each subscriber found."""
        lookup = Lookup(
            self.ledger,
            self._client,
            self.report,
            batch=self.settings.lookup_batch,
            max_age_s=self.settings.max_read_age_s,
            progress=self._progress,
        )
        done = found = 0

        async def write(subscriber: Found, patched: Callable[[], None]) -> None:
            nonlocal done, found
            # Read again if the pipeline was held up (retries in an outage, say).
            (subscriber,) = await lookup.refresh([subscriber], self.settings.max_read_age_s)
            await self._write_subscriber(subscriber, patched)
            done += 1
            if done > found or done % PROGRESS_RECOUNT == 0:  # a count is a table scan
                found = lookup.count()
            self._report_progress("write", done, max(done, found))

        pipeline = Pipeline(
            lookup,
            self._client,
            write,
            workers=self.settings.workers,
            lookup_batch=self.settings.lookup_batch,
        )
        self._pipeline = pipeline
        if self._stop_asked:
            pipeline.stop()
        try:
            await pipeline.run()
        except BaseExceptionGroup as failures:
            raise _first_leaf(failures) from None
        finally:
            self._pipeline = None

    def request_stop(self) -> None:
        """Let the drain under way end at its next step: the calls in flight are answered and
        journaled, no new one starts, and `drain` returns. Nothing is repeated or lost: the
        rest stays pending or journaled for the next drain (docs/design/service.md, "Start and
        stop")."""
        self._stop_asked = True
        if self._pipeline is not None:
            self._pipeline.stop()

    def _stopping(self) -> bool:
        """A stop was asked for, or the drain failed elsewhere: make no further call (the
        journal resumes the rest)."""
        return self._stop_asked or (self._pipeline is not None and self._pipeline.stopping)

    def _report_progress(self, stage: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(stage, done, total)

    async def _write_subscriber(self, found: Found, patched: Callable[[], None]) -> None:
        """Plan, journal, PATCH (then call `patched`), post the events, settle."""
        subscriber, identities = found.subscriber, found.identities
        subscriber_id = str(subscriber["id"])
        changes = self.ledger.pending_changes(identities)
        plan = plan_subscriber(
            subscriber,
            changes,
            applied=self.ledger.applied_versions(subscriber_id),
            post_events=self.settings.post_events,
        )
        if self._on_plan is not None and (plan.patch_properties is not None or plan.events):
            self._on_plan(plan)
        self.report.stale += len(plan.stale)
        if self.settings.dry_run:  # settled in the scratch copy only, so the counts add up
            self.ledger.settle(subscriber_id, plan.winners.values(), plan.stale)
            self._count_plan(plan)
            return
        if plan.patch_properties is None and not plan.events:
            self.ledger.settle(subscriber_id, plan.winners.values(), plan.stale)
            self.report.applied += len(plan.winners)
            return
        if self._stopping():
            return
        intent_id = self.ledger.begin_intent(plan)
        if plan.patch_properties is not None:

            def sent(at: float) -> None:
                self._read_ages.append(at - found.read_at)
                patched()

            try:
                await self._client.patch_subscriber(
                    subscriber_id, properties=plan.patch_properties, on_sent=sent
                )
            except NotFoundError:
                self.ledger.abandon_intent(intent_id)
                self.ledger.park(identities)
                return
            except BadRequestError as refused:
                self._refuse_write(
                    intent_id, subscriber_id, [*plan.winners.values()], plan.stale, refused
                )
                return
            self.ledger.mark_patched(intent_id)
        for seq, body in enumerate(plan.events):
            if self._stopping():
                return  # journaled: the next run posts the rest
            await self._post(intent_id, seq, body)
        self.ledger.settle(subscriber_id, plan.winners.values(), plan.stale, intent_id)
        self._count_plan(plan)

    def _refuse_write(
        self,
        intent_id: int,
        subscriber_id: str,
        winners: list[AudienceChange],
        superseded: list[AudienceChange],
        refused: BadRequestError,
    ) -> None:
        """A 400 on the PATCH: drop the journaled write, keep the reason, post no event."""
        self.ledger.abandon_intent(intent_id)
        reason = f"Postscript refused the PATCH of {subscriber_id}: {refused.message}"
        self.ledger.refuse(winners, reason, self.run_id, superseded)
        self.report.refused += len(winners)

    def _count_plan(self, plan: Plan) -> None:
        self.report.applied += len(plan.winners)
        self.report.changed += len(plan.flips)
        if plan.patch_properties is not None:
            self.report.subscribers_patched += 1
        if self.settings.dry_run:
            self.report.events_posted += len(plan.events)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
