"""`pslab serve`'s web app: Segment's events in over HTTP, the ledger drained behind them.

docs/design/service.md. Routes:

- `POST /v1/identify`, `/v1/track`, `/v1/batch` (Segment's HTTP API shapes) and
  `POST /` (an event, a batch or a JSON array: the Webhooks destination) — intake;
- `GET /health` (liveness), `GET /status` (the backlog, the drain, the API calls),
  `GET /metrics` (Prometheus).

A request is answered 200 only once its events are committed to the ledger;
a refused one (401, 413, 400) stores nothing. Everything runs on one event
loop in one thread: a handler stores its events with `Engine.ingest_body`,
which commits before it returns, between two of the drain's awaits. So the
ledger's one SQLite connection is never used from two threads, and no
transaction spans an await.
"""

from __future__ import annotations

import hmac
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from stamina.instrumentation import RetryDetails
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.httpguard import GuardCounts
from postscript_audience_lab.sync.engine import OPT_IN_EVENT, Engine
from postscript_audience_lab.sync.ledger import Outcome, Status
from postscript_audience_lab.sync.parse import decode_json
from postscript_audience_lab.sync.service.drain_loop import (
    GATHER_S,
    PARKED_RETRY_S,
    DrainLoop,
    DrainState,
)
from postscript_audience_lab.sync.service.intake import (
    BATCH_ROUTE,
    EVENT_ROUTES,
    MAX_BODY_BYTES,
    MAX_INFLIGHT_BYTES,
    BodyError,
    Credentials,
    decode_body,
    receipt,
)
from postscript_audience_lab.sync.service.logs import redact
from postscript_audience_lab.sync.service.metrics import CONTENT_TYPE, Figures, ServiceMetrics

__all__ = ["BodyBudget", "Service"]

log = logging.getLogger("pslab.serve")

INTAKE_ROUTES = (*EVENT_ROUTES, BATCH_ROUTE, "/")
WEBHOOK_ROUTE = "/postscript/webhooks"  # Postscript's deliveries (serve --webhook-url)
WEBHOOK_BODY_BYTES = 64 * 1024  # a delivery is an envelope of a few hundred bytes
RETRY_AFTER_S = "5"  # what a 503 asks the sender to wait
DRAIN_STOP_S = 10.0  # how long a stop waits for the drain's calls in flight to be answered
SINCE_START = (
    "received",
    "accepted",
    "duplicates",
    "stale",
    "rejected",
    "applied",
    "changed",
    "refused",
    "unparked",
    "resumed",
    "subscribers_patched",
    "events_posted",
    "ambiguous",
)


class Service:
    """The intake, the drain loop and the operator's view over one engine."""

    def __init__(
        self,
        engine: Engine,
        credentials: Credentials,
        *,
        metrics: ServiceMetrics | None = None,
        drain: bool = True,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_inflight_bytes: int = MAX_INFLIGHT_BYTES,
        gather_s: float = GATHER_S,
        parked_retry_s: float = PARKED_RETRY_S,
        connections: GuardCounts | None = None,
        bodies: BodyBudget | None = None,
    ) -> None:
        self.engine = engine
        self.credentials = credentials
        self.metrics = metrics or ServiceMetrics()
        self.drain = DrainLoop(
            engine, enabled=drain, gather_s=gather_s, parked_retry_s=parked_retry_s
        )
        self.max_body_bytes = max_body_bytes
        # Shared by every shop of a process (docs/design/service.md#many-shops): it bounds memory.
        self.bodies = (
            bodies if bodies is not None else BodyBudget(max(max_inflight_bytes, max_body_bytes))
        )
        self.connections = connections
        self.accepting = True
        self.webhook_token: str | None = None  # set once subscribed to Postscript's opt-ins
        self._started = time.monotonic()
        self.metrics.read_figures_from(self.figures)
        routes = [Route(path, self._intake_at(path), methods=["POST"]) for path in INTAKE_ROUTES]
        routes += [
            Route(WEBHOOK_ROUTE, self._postscript_webhook, methods=["POST"]),
            Route("/health", self._health, methods=["GET"]),
            Route("/status", self._status, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes, lifespan=self._lifespan)

    async def run(self) -> None:
        """Check the shop (once), then drain until cancelled or paused."""
        await self.engine.check_shop()
        await self.drain.run()

    def stop_accepting(self) -> None:
        """From now on intake answers 503, and the drain winds down (the process is stopping):
        the writes in flight are answered and journaled, so a stop repeats no event."""
        self.accepting = False
        self.drain.request_stop()

    def on_retry(self, details: RetryDetails) -> None:
        """A stamina hook: count and log each scheduled retry of a Postscript call."""
        self.metrics.on_retry(details)
        fields = {"cause": type(details.caused_by).__name__, "wait_s": round(details.wait_for, 2)}
        log.warning("api_retry", extra={"fields": {**fields, "attempt": details.retry_num}})

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.running():
            yield

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The drain runs inside the block; leaving it stops intake and winds the drain down."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.run)
            yield
            self.stop_accepting()
            # The drain ends once its calls in flight are answered; one that Postscript does not
            # answer in time is cancelled, and stays journaled
            # (docs/design/convergence.md#nothing-lost, docs/design/service.md).
            with anyio.move_on_after(DRAIN_STOP_S):
                await self.drain.wait_between_drains()
            tasks.cancel_scope.cancel()

    # -- intake ------------------------------------------------------------------

    def _intake_at(self, route: str) -> Callable[[Request], Awaitable[Response]]:
        async def intake(request: Request) -> Response:
            response = await self._intake(route, request)
            self.metrics.requests.labels(route=route, status=str(response.status_code)).inc()
            return response

        return intake

    async def _intake(self, route: str, request: Request) -> Response:
        if not self.accepting:
            return _error(503, "the service is stopping; send again shortly", RETRY_AFTER_S)
        headers = request.headers
        by_key = self.credentials.by_write_key(headers.get("authorization"))
        signed = self.credentials.could_sign(headers.get("x-signature"))
        if self.credentials.required and not by_key and not signed:
            return self._unauthorised(route, self._why_refused(headers))  # before the body
        try:
            body = await self.bodies.read(request, self.max_body_bytes)
            if not self._allowed(by_key, headers.get("x-signature"), body):
                return self._unauthorised(route, "X-Signature does not match the body")
            payload = decode_body(route, body)
        except ClientDisconnect:  # the sender left, or missed the body deadline: nothing stored
            return _error(400, "the body did not arrive whole")
        except BodyError as refused:
            fields = {"route": route, "status": refused.status, "reason": redact(refused.reason)}
            log.warning("intake_refused", extra={"fields": fields})
            retry_after = RETRY_AFTER_S if refused.status == 503 else None
            return _error(refused.status, refused.reason, retry_after)
        return self._store(route, payload)

    def _store(self, route: str, payload: object) -> Response:
        try:
            stored = self.engine.ingest_body(payload)
        except sqlite3.Error as failure:  # e.g. a full disk: nothing was acknowledged
            fields = {"route": route, "error": redact(str(failure))}
            log.error("intake_not_stored", extra={"fields": fields})
            return _error(503, "the events could not be stored; send them again", RETRY_AFTER_S)
        outcomes = Counter(outcome for _, outcome in stored)
        for outcome, count in outcomes.items():
            self.metrics.events.labels(outcome=outcome.value).inc(count)
        if outcomes[Outcome.ACCEPTED]:
            self.drain.wake()
        return _SafeJSONResponse(receipt(stored))

    def _allowed(self, by_key: bool, signature: str | None, body: bytes) -> bool:
        """Either credential will do when both are set up (docs/design/service.md)."""
        credentials = self.credentials
        return not credentials.required or by_key or credentials.by_signature(signature, body)

    def _why_refused(self, headers: Mapping[str, str]) -> str:
        """Which credential was missing or wrong, in words that reveal no secret."""
        credentials = self.credentials
        authorization, signature = headers.get("authorization"), headers.get("x-signature")
        takes = " or ".join(
            what
            for what, set_up in (
                ("the write key as the HTTP Basic user", credentials.write_key is not None),
                ("an X-Signature of the body", credentials.shared_secret is not None),
            )
            if set_up
        )
        if authorization is None and signature is None:
            return f"no credentials: send {takes}"
        if signature is not None and credentials.shared_secret is None:
            return f"this service checks no X-Signature: send {takes}"
        if signature is not None and authorization is None:
            return "X-Signature is not a hex HMAC-SHA1 (40 hexadecimal digits)"
        if not authorization or authorization.partition(" ")[0].lower() != "basic":
            return f"Authorization is not HTTP Basic: send {takes}"
        if credentials.write_key is None:
            return f"this service takes no write key: send {takes}"
        return "the write key is not this service's"

    def _unauthorised(self, route: str, reason: str) -> Response:
        fields = {"route": route, "reason": reason}
        log.warning("intake_unauthorised", extra={"fields": fields})
        response = _error(401, f"unauthorised: {reason}")
        if self.credentials.write_key is not None:
            response.headers["WWW-Authenticate"] = 'Basic realm="pslab"'
        return response

    # -- Postscript's webhooks -----------------------------------------------------

    async def _postscript_webhook(self, request: Request) -> Response:
        """A delivery from Postscript: a subscriber opted in, so the changes parked for want
        of one are looked up at once. Signed with the shop's signing token, compared in
        constant time, as the webhooks document says (docs/design/service.md#opt-ins)."""
        token = self.webhook_token
        if token is None:
            return _error(404, "this service subscribed to no Postscript webhook (--webhook-url)")
        given = request.headers.get("postscript-signature", "").encode("latin-1")
        if not hmac.compare_digest(given, token.encode()):
            log.warning("webhook_unauthorised", extra={"fields": {"route": WEBHOOK_ROUTE}})
            return _error(401, "unauthorised: Postscript-Signature is not the shop's token")
        try:
            body = await self.bodies.read(request, WEBHOOK_BODY_BYTES)
        except ClientDisconnect:
            return _error(400, "the body did not arrive whole")
        except BodyError as refused:
            return _error(refused.status, refused.reason)
        payload = decode_json(body.decode("utf-8", errors="surrogateescape"), "the delivery")
        event = payload.get("event") if isinstance(payload, dict) else None
        if event == OPT_IN_EVENT:
            log.info("opt_in", extra={"fields": {"parked": self.engine.report.parked}})
            self.drain.unpark_now()
        return _SafeJSONResponse({"success": True})  # 200: anything else is delivered again

    # -- operating it ------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        if not self.accepting:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def _status(self, request: Request) -> Response:
        return JSONResponse(self.status())

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    def figures(self) -> Figures:
        engine = self.engine
        engine.count_leftovers(identities=False)  # the counters only: no scan per poll
        report = engine.report
        return Figures(
            applied=report.applied,
            changed=report.changed,
            subscribers_patched=report.subscribers_patched,
            events_posted=report.events_posted,
            pending=report.pending,
            parked=report.parked,
            lag_s=self.drain.lag_s(),
            drain_rate=self.drain.rate(),
            paused=self.drain.state is DrainState.PAUSED,
        )

    def status(self) -> dict[str, Any]:
        """What `GET /status` answers."""
        figures = self.figures()
        ledger = self.engine.ledger
        counts = ledger.counts()
        rows = counts.by_status
        report = self.engine.report.as_dict()
        return {
            "drain": self.drain.state.value,
            "accepting": self.accepting,
            "shop": ledger.meta("shop"),
            "pending": figures.pending,
            "writes_in_progress": self.engine.report.journaled,
            "parked": figures.parked,
            "parked_retry_s": self.drain.parked_retry_s,
            "next_parked_retry_in_s": _rounded(self.drain.next_parked_retry_in_s()),
            "oldest_pending_age_s": round(figures.lag_s, 3),
            "drain_rate_per_s": round(figures.drain_rate, 3),
            "ledger": {
                "pending": rows[Status.PENDING],
                "parked": rows[Status.PARKED],
                "applied": rows[Status.DONE],
                "refused": rows[Status.REFUSED],
                "rejected": counts.rejections,
                "rejection_bytes": counts.rejection_bytes,
                "rejections_dropped": counts.rejections_dropped,
                "keep_rejections": ledger.limits.rows,
                "keep_rejection_bytes": ledger.limits.bytes,
                "state_file_bytes": ledger.file_bytes(),
                "state_free_bytes": ledger.free_bytes(),
            },
            "last_error": self.drain.last_error,
            "last_error_at": self.drain.last_error_at,
            "paused_because": self.drain.paused_because,
            "failing": {name: redact(what) for name, what in self.engine.failing.items()},
            "api_calls": self._api_calls(),
            "intake": self._intake_guard(),
            "since_start": {name: report[name] for name in SINCE_START},
            "uptime_s": round(time.monotonic() - self._started, 1),
        }

    def _intake_guard(self) -> dict[str, Any]:
        """What the hostile-client bounds have done (docs/design/service.md)."""
        bodies = {"body_bytes_reading": self.bodies.held, "busy_refusals": self.bodies.refused}
        if self.connections is None:
            return bodies
        return {**bodies, "connections": self.connections.as_dict()}

    def _api_calls(self) -> dict[str, Any]:
        totals: dict[str, int] = {}
        by_status: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.metrics.api_calls.items()):
            totals[endpoint] = totals.get(endpoint, 0) + count
            by_status.setdefault(endpoint, {})[status] = count
        return {"total": sum(totals.values()), **totals, "by_status": by_status}


class BodyBudget:
    """The bytes of request bodies held at once, all requests together, kept under `total`.

    One body may be as large as the configured limit, but sixty slow senders
    must not make the process hold sixty of them: a body is counted against the
    budget as it arrives (its declared length up front, when it declares one), and
    one that does not fit is refused with a 503 that asks the sender to come back.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0
        self.refused = 0

    async def read(self, request: Request, limit: int) -> bytes:
        """The body, refused with a 413 as soon as it is known to be over `limit` bytes."""
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise BodyError(415, f"Content-Encoding {encoding!r} is not taken; send the body as is")
        declared = request.headers.get("content-length", "").strip()
        expected = int(declared) if declared.isdigit() else 0
        if expected > limit:
            raise BodyError(413, f"the body is over {limit:,} bytes; send smaller batches")
        reserved = 0
        try:
            reserved = self._take(expected)
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyError(413, f"the body is over {limit:,} bytes; send smaller batches")
                if len(body) > reserved:
                    reserved += self._take(len(body) - reserved)
            return bytes(body)
        finally:
            self.held -= reserved

    def _take(self, size: int) -> int:
        if self.held + size > self.total:
            self.refused += 1
            raise BodyError(503, "the service is receiving too much at once; send again shortly")
        self.held += size
        return size


class _SafeJSONResponse(JSONResponse):
    """JSON written as ASCII: a reason or messageId echoed from input may hold a lone
    surrogate, which no UTF-8 encoder takes, and would otherwise turn the answer into a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, retry_after: str | None = None) -> JSONResponse:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    body = {"success": False, "error": message}
    return _SafeJSONResponse(body, status_code=status, headers=headers)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
