"""PostscriptClient.get_subscriber / patch_subscriber on replayed contracts, errors included."""

from __future__ import annotations

import pytest

from postscript_audience_lab.contracts.replay import replay
from postscript_audience_lab.sync.errors import BadRequestError, NotFoundError, ServerError
from tests.contracts.replayed import RETRIES, alice_id, contract, postscript_client

pytestmark = pytest.mark.anyio


async def test_get_subscriber_returns_the_subscriber() -> None:
    with replay("subscribers.get"):
        async with postscript_client() as client:
            subscriber = await client.get_subscriber(alice_id())
    assert subscriber["id"] == alice_id()
    assert subscriber["properties"] == {"loyalty_tier": "gold"}


async def test_an_unknown_subscriber_raises_not_found_with_the_api_message() -> None:
    recorded = contract("subscribers.get.not_found")
    with replay("subscribers.get.not_found") as served:
        async with postscript_client() as client:
            with pytest.raises(NotFoundError) as raised:
                await client.get_subscriber("s_000000000000000000000000")
    assert raised.value.status == 404
    assert raised.value.message == recorded.response.body["error_message"]
    assert served.calls("subscribers.get.not_found") == 1


async def test_a_server_error_is_retried_until_it_succeeds() -> None:
    with replay("subscribers.get.server_error", "subscribers.get") as served:
        async with postscript_client() as client:
            subscriber = await client.get_subscriber(alice_id())
    assert subscriber["id"] == alice_id()
    assert served.calls("subscribers.get.server_error") == 1
    assert client.calls["subscribers.get"] == 2


async def test_a_server_error_that_persists_raises_server_error_after_the_retries() -> None:
    with replay("subscribers.get.server_error"):
        async with postscript_client() as client:
            with pytest.raises(ServerError):
                await client.get_subscriber(alice_id())
    assert client.calls["subscribers.get"] == RETRIES


async def test_patch_sends_properties_and_returns_the_merged_subscriber() -> None:
    with replay("subscribers.patch"):
        async with postscript_client() as client:
            subscriber = await client.patch_subscriber(
                alice_id(), properties={"Segment Audiences": ["vip_customers"]}
            )
    assert subscriber["properties"] == {
        "loyalty_tier": "gold",
        "Segment Audiences": ["vip_customers"],
    }


async def test_a_51st_property_raises_bad_request_with_the_api_message_without_retrying() -> None:
    recorded = contract("subscribers.patch.too_many_properties")
    with replay("subscribers.patch.too_many_properties") as served:
        async with postscript_client() as client:
            with pytest.raises(BadRequestError) as raised:
                await client.patch_subscriber(
                    alice_id(), properties=recorded.request.json["properties"]
                )
    assert recorded.response.body["errors"][0]["msg"] in raised.value.message
    assert served.calls("subscribers.patch.too_many_properties") == 1
