"""How `pslab serve` names and counts Postscript calls for its metrics (docs/design/service.md)."""

from __future__ import annotations

import httpx
import pytest

from postscript_audience_lab.sync.service.metrics import ServiceMetrics, endpoint_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("method", "url", "endpoint"),
    [
        ("GET", "https://api.postscript.io/api/v2/me", "me"),
        (
            "GET",
            "https://api.postscript.io/api/v2/subscribers?phone_number__in=1",
            "subscribers.list",
        ),
        ("GET", "https://api.postscript.io/api/v2/subscribers/s_1", "subscribers.get"),
        ("PATCH", "https://api.postscript.io/api/v2/subscribers/s_1", "subscribers.patch"),
        ("POST", "https://api.postscript.io/api/v2/events", "events.create"),
        ("POST", "http://proxy/postscript/api/v2/events/", "events.create"),
        ("GET", "https://api.postscript.io/api/v2/webhooks/token", "webhooks.token"),
        ("GET", "https://api.postscript.io/api/v2/webhooks", "webhooks.list"),
        ("POST", "https://api.postscript.io/api/v2/webhooks", "webhooks.create"),
        ("GET", "https://api.postscript.io/api/v2/keywords", "other"),
    ],
)
def test_each_call_is_named_as_the_client_names_it(method: str, url: str, endpoint: str) -> None:
    assert endpoint_of(httpx.Request(method, url)) == endpoint


async def test_the_metered_transport_counts_answers_and_failures_and_stays_open() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={})])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise httpx.ConnectError("refused")
        return next(answers)

    metrics = ServiceMetrics()
    metered = metrics.meter(httpx.MockTransport(answer))
    for _ in range(2):  # a client per drain, each closing its transport when done
        async with httpx.AsyncClient(transport=metered, base_url="http://ps") as client:
            await client.get("/api/v2/me")
    async with httpx.AsyncClient(transport=metered, base_url="http://ps") as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("/api/v2/events")

    assert dict(metrics.api_calls) == {
        ("me", "503"): 1,
        ("me", "200"): 1,
        ("events.create", "error"): 1,
    }
    assert b'pslab_api_calls_total{endpoint="me",status="503"} 1.0' in metrics.exposition()
