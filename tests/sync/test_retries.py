"""Retries through the engine's client: what is retried, how long it waits, what is counted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import stamina
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from sync.client import PostscriptClient
from sync.errors import AuthenticationError
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
    async with PostscriptClient("http://emulator", SECRET, transport=transport) as client:
        me = await client.me()
    assert me["resource_type"]
    assert [detail.wait_for for detail in retries] == [0.05]
    assert client.calls["me"] == 2


async def test_a_refused_key_is_not_retried(world: World, retries: list[RetryDetails]) -> None:
    async with PostscriptClient("http://emulator", "sk_wrong", transport=world.transport) as c:
        with pytest.raises(AuthenticationError):
            await c.me()
    assert retries == []
    assert c.calls["me"] == 1
