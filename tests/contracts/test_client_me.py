"""PostscriptClient.me on replayed contracts: success, a refused key, a rate limit."""

from __future__ import annotations

import pytest

from postscript_audience_lab.contracts.replay import replay
from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.errors import AuthenticationError, RateLimitedError
from tests.contracts.replayed import RETRIES, postscript_client

pytestmark = pytest.mark.anyio


async def test_me_returns_the_shop_the_key_belongs_to() -> None:
    with replay("me"):
        async with postscript_client() as client:
            shop = await client.me()
    assert shop["resource_type"] == "shop"
    assert client.calls["me"] == 1


async def test_a_refused_key_raises_authentication_error_without_retrying() -> None:
    with replay("me.unauthorized") as served:
        async with postscript_client() as client:
            with pytest.raises(AuthenticationError) as raised:
                await client.me()
    assert raised.value.status == 401
    assert served.calls("me.unauthorized") == 1


async def test_a_key_refused_with_403_raises_authentication_error_without_retrying() -> None:
    with replay("me.public_key") as served:
        async with postscript_client() as client:
            with pytest.raises(AuthenticationError) as raised:
                await client.me()
    assert raised.value.status == 403
    assert served.calls("me.public_key") == 1


async def test_a_rate_limited_call_is_retried_until_it_succeeds() -> None:
    with replay("me.rate_limited", "me") as served:
        async with postscript_client() as client:
            shop = await client.me()
    assert shop["resource_type"] == "shop"
    assert served.calls("me.rate_limited") == 1
    assert client.calls["me"] == 2


async def test_a_rate_limit_that_never_lifts_raises_rate_limited_error() -> None:
    with replay("me.rate_limited"):
        client: PostscriptClient
        async with postscript_client() as client:
            with pytest.raises(RateLimitedError) as raised:
                await client.me()
    assert raised.value.message == "Rate limit exceeded"
    assert client.calls["me"] == RETRIES
