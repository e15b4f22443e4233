"""Retries through the engine's client: what is retried, how long it waits, what is counted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import stamina
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from postscript_audience_lab.sync.client import RETRY_ATTEMPTS, PostscriptClient
from postscript_audience_lab.sync.errors import AuthenticationError, ServerError
from tests.sync.world import SECRET, World

pytestmark = pytest.mark.anyio


class RateLimitedOnce(httpx.AsyncBaseTransport):
    """Answers the first request with 429 + Retry-After, then passes requests through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, retry_after: str) -> None:
        self.inner = inner
        self.retry_after = retry_after
        self.answered = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.answered:
            self.answered = True
            body = {"error_code": 3002, "error_message": "Rate limit exceeded", "success": False}
            return httpx.Response(429, headers={"Retry-After": self.retry_after}, json=body)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def retries() -> Iterator[list[RetryDetails]]:
    """Real (not instant) retries, observed through stamina's instrumentation."""
    seen: list[RetryDetails] = []

    def record(details: RetryDetails) -> None:
        seen.append(details)

    hooks = get_on_retry_hooks()
    set_on_retry_hooks([record])
    with stamina.set_testing(False):
        yield seen
    set_on_retry_hooks(hooks)


async def test_a_429_waits_as_long_as_retry_after_says_and_counts_both_attempts(
    world: World, retries: list[RetryDetails]
) -> None:
    transport = RateLimitedOnce(world.transport, retry_after="0.05")
    async with PostscriptClient(
        "http://emulator", SECRET, transport=transport, rate_limit=0
    ) as client:
        me = await client.me()
    assert me["resource_type"]
    assert [detail.wait_for for detail in retries] == [0.05]
    assert client.calls["me"] == 2


async def test_a_429_while_paced_lowers_the_rate_and_sends_again_after_retry_after(
    world: World, retries: list[RetryDetails]
) -> None:
    transport = RateLimitedOnce(world.transport, retry_after="0.05")
    async with PostscriptClient(
        "http://emulator", SECRET, transport=transport, rate_limit=15
    ) as client:
        me = await client.me()
    assert me["resource_type"]
    assert retries == []  # sent again by the pacer, not by the retries
    assert (client.calls["me"], client.rate_limited) == (2, 1)
    assert client.rate is not None
    assert client.rate.decreases == 1
    assert client.rate.rate(0.0) < 15
    assert client.first_sent_at is not None
    assert client.last_sent_at is not None
    assert client.last_sent_at - client.first_sent_at >= 0.05


async def test_a_refused_key_is_not_retried(world: World, retries: list[RetryDetails]) -> None:
    async with PostscriptClient("http://emulator", "sk_wrong", transport=world.transport) as c:
        with pytest.raises(AuthenticationError):
            await c.me()
    assert retries == []
    assert c.calls["me"] == 1


class FailingFirst(httpx.AsyncBaseTransport):
    """Answers the first `times` requests with 503, then passes requests through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, times: int) -> None:
        self.inner = inner
        self.left = times

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.left > 0:
            self.left -= 1
            return httpx.Response(503, json={"error": "maintenance"})
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("forever", [False, True])
async def test_a_long_running_engine_retries_past_the_batch_limit_and_shows_the_failing_call(
    world: World,
    retries: list[RetryDetails],
    monkeypatch: pytest.MonkeyPatch,
    forever: bool,
) -> None:
    monkeypatch.setattr(
        "postscript_audience_lab.sync.client.RETRY_WAIT_MAX_S", 0.001
    )  # real retries, tiny waits
    transport = FailingFirst(world.transport, times=3 * RETRY_ATTEMPTS)
    client = PostscriptClient("http://emulator", SECRET, transport=transport, retry_forever=forever)
    shown: list[str] = []
    set_on_retry_hooks([lambda details: shown.append(client.failing.get("me", ""))])

    async with client:
        if forever:
            assert (await client.me())["resource_type"]
        else:
            with pytest.raises(ServerError):
                await client.me()

    attempts = 3 * RETRY_ATTEMPTS + 1 if forever else RETRY_ATTEMPTS
    assert client.calls["me"] == attempts
    assert shown[-1] == f"attempt {len(shown)}: HTTP 503: maintenance"
    assert ("me" in client.failing) is not forever  # cleared once a call succeeds
