"""`pslab serve`'s Prometheus metrics, on a registry of its own (docs/design/service.md).

Intake requests, intake events and retries are counted as they happen. What
the engine already keeps (changes applied, the backlog, the drain's lag) is
read from the service when Prometheus scrapes, through `Figures`, so no number
is kept twice. Postscript calls are counted by endpoint and status by
`MeteredTransport`, the transport every drain's client sends through.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from stamina.instrumentation import RetryDetails

__all__ = ["CONTENT_TYPE", "Figures", "MeteredTransport", "ServiceMetrics", "endpoint_of"]

ApiCalls = collections.Counter[tuple[str, str]]  # (endpoint, status) -> attempts
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Figures:
    """What the service reports of the engine at one moment."""

    applied: int  # winning changes settled since start
    changed: int  # list entries added or removed since start
    subscribers_patched: int
    events_posted: int
    pending: int  # changes waiting in the ledger (journaled writes included)
    parked: int
    lag_s: float  # how long the oldest acknowledged, unsettled change has waited
    drain_rate: float  # changes applied per second, lately
    paused: bool  # a refused key stopped the drain


class ServiceMetrics:
    """Every metric of one service; `exposition()` is the body of `GET /metrics`."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "pslab_intake_requests",
            "HTTP intake requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.events = prometheus_client.Counter(
            "pslab_intake_events",
            "Events received over HTTP and stored, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.retries = prometheus_client.Counter(
            "pslab_api_retries",
            "Postscript calls retried, by what the failed attempt met.",
            ["cause"],
            registry=self.registry,
        )
        self.api_calls: ApiCalls = collections.Counter()
        self._figures: Callable[[], Figures] | None = None
        self.registry.register(_EngineCollector(self))

    def meter(self, inner: httpx.AsyncBaseTransport) -> MeteredTransport:
        """A transport that counts the Postscript calls sent through it here."""
        return MeteredTransport(inner, self.api_calls)

    def read_figures_from(self, figures: Callable[[], Figures]) -> None:
        self._figures = figures

    def figures(self) -> Figures | None:
        return self._figures() if self._figures is not None else None

    def on_retry(self, details: RetryDetails) -> None:
        """A stamina hook: count one scheduled retry."""
        self.retries.labels(cause=type(details.caused_by).__name__).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (`CONTENT_TYPE`)."""
        return prometheus_client.generate_latest(self.registry)


class _EngineCollector(Collector):
    """Reads the engine's figures and the API call counts at scrape time."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        calls = CounterMetricFamily(
            "pslab_api_calls",
            "Postscript API calls (every attempt), by endpoint and status (error: no answer).",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(self._metrics.api_calls.items()):
            calls.add_metric([endpoint, status], count)
        yield calls
        figures = self._metrics.figures()
        if figures is None:
            return
        yield from (
            CounterMetricFamily(
                "pslab_changes_applied",
                "Winning membership changes settled against Postscript.",
                value=figures.applied,
            ),
            CounterMetricFamily(
                "pslab_list_entries_changed",
                "Segment Audiences entries added or removed.",
                value=figures.changed,
            ),
            CounterMetricFamily(
                "pslab_subscribers_patched",
                "Subscribers PATCHed.",
                value=figures.subscribers_patched,
            ),
            CounterMetricFamily(
                "pslab_postscript_events_posted",
                "Segment_Audience_Entered/Exited events posted.",
                value=figures.events_posted,
            ),
            GaugeMetricFamily(
                "pslab_pending_changes", "Changes waiting to be written.", value=figures.pending
            ),
            GaugeMetricFamily(
                "pslab_parked_changes", "Changes waiting for a subscriber.", value=figures.parked
            ),
            GaugeMetricFamily(
                "pslab_drain_lag_seconds",
                "How long the oldest acknowledged, unsettled change has waited.",
                value=figures.lag_s,
            ),
            GaugeMetricFamily(
                "pslab_drain_rate",
                "Changes applied per second over the last minute.",
                value=figures.drain_rate,
            ),
            GaugeMetricFamily(
                "pslab_drain_paused",
                "1 while a refused key keeps the drain stopped (restart with a good key).",
                value=int(figures.paused),
            ),
        )


def endpoint_of(request: httpx.Request) -> str:
    """The name `sync.client` gives the Postscript call `request` makes."""
    path, method = request.url.path.rstrip("/"), request.method
    for suffix, name in (
        ("/api/v2/me", "me"),
        ("/api/v2/events", "events.create"),
        ("/api/v2/subscribers", "subscribers.list"),
        ("/api/v2/webhooks/token", "webhooks.token"),
    ):
        if path.endswith(suffix):
            return name
    if "/api/v2/subscribers/" in path:
        return "subscribers.patch" if method == "PATCH" else "subscribers.get"
    if path.endswith("/api/v2/webhooks"):  # serve --webhook-url's subscription at start
        return "webhooks.create" if method == "POST" else "webhooks.list"
    return "other"


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts each request by endpoint and status; passes everything else through.

    Closing it leaves the wrapped transport open: each drain's client closes its
    transport when the drain ends, and the next drain sends through the same one.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, calls: ApiCalls) -> None:
        self.inner = inner
        self._calls = calls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = endpoint_of(request)
        try:
            response = await self.inner.handle_async_request(request)
        except Exception:
            self._calls[(endpoint, "error")] += 1
            raise
        self._calls[(endpoint, str(response.status_code))] += 1
        return response

    async def aclose(self) -> None:
        """Keep the wrapped transport open (the service closes it when it stops)."""
