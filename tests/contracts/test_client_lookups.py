"""PostscriptClient.find_subscribers on replayed contracts: by phone, by email, across pages."""

from __future__ import annotations

import pytest

from postscript_audience_lab.contracts.replay import replay
from tests.contracts.replayed import alice_id, postscript_client

pytestmark = pytest.mark.anyio


async def test_lookup_by_phones_finds_the_subscribers_that_exist() -> None:
    with replay("subscribers.list.phone_in"):
        async with postscript_client() as client:
            found = await client.find_subscribers(phones=["+15555550100", "+15555550111"])
    assert [s["id"] for s in found] == [alice_id()]
    assert found[0]["phone_number"] == "+15555550100"
    assert client.calls["subscribers.list"] == 1


async def test_lookup_by_emails_finds_the_subscribers_that_exist() -> None:
    with replay("subscribers.list.email_in"):
        async with postscript_client() as client:
            found = await client.find_subscribers(
                emails=["alice@example.com", "nobody@example.com"]
            )
    assert [s["email"] for s in found] == ["alice@example.com"]


async def test_lookup_by_phones_and_emails_asks_once_for_each() -> None:
    with replay("subscribers.list.phone_in", "subscribers.list.email_in"):
        async with postscript_client() as client:
            found = await client.find_subscribers(
                phones=["+15555550100", "+15555550111"],
                emails=["alice@example.com", "nobody@example.com"],
            )
    assert [s["id"] for s in found] == [alice_id(), alice_id()]
    assert client.calls["subscribers.list"] == 2


async def test_lookup_follows_every_page_until_total_pages() -> None:
    with replay("subscribers.list.page1", "subscribers.list.page2") as served:
        async with postscript_client() as client:
            found = await client.find_subscribers(emails=["crowd@example.com"])
    assert served.calls("subscribers.list.page1") == 1
    assert served.calls("subscribers.list.page2") == 1
    assert len(found) == 2
    assert {s["email"] for s in found} == {"crowd@example.com"}
