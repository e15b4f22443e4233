"""PostscriptClient.post_event on replayed contracts."""

from __future__ import annotations

import pytest

from postscript_audience_lab.contracts.replay import replay
from postscript_audience_lab.sync.errors import BadRequestError
from tests.contracts.replayed import contract, postscript_client, request_body

pytestmark = pytest.mark.anyio


async def test_post_event_returns_the_accepted_event_ids() -> None:
    with replay("events.create"):
        async with postscript_client() as client:
            answer = await client.post_event(request_body("events.create"))
    assert answer == contract("events.create").response.body
    assert client.calls["events.create"] == 1


async def test_a_bad_event_type_raises_bad_request_with_the_api_message() -> None:
    with replay("events.create.bad_type") as served:
        async with postscript_client() as client:
            with pytest.raises(BadRequestError) as raised:
                await client.post_event(request_body("events.create.bad_type"))
    expected = contract("events.create.bad_type").response.body["errors"][0]["msg"]
    assert expected in raised.value.message
    assert served.calls("events.create.bad_type") == 1
