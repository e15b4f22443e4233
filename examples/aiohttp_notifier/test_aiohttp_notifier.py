"""The aiohttp notifier under `mock_postscript`, unchanged: the real URL is served in process."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp_notifier import tag_subscriber

from postscript_audience_lab.emulator.testing import Postscript


def test_the_shoppers_subscriber_is_tagged(mock_postscript: Postscript) -> None:
    ada = mock_postscript.seed(phone_number="+15555550100", tags=["new"])
    tagged = asyncio.run(tag_subscriber(mock_postscript.secret_key, "+15555550100", "shipped"))
    assert tagged == ada.id
    assert mock_postscript.subscriber(id=ada.id).tags == ["new", "shipped"]


@pytest.mark.postscript(faults={"error_rate": 1.0, "error_statuses": [503]})
def test_a_failing_postscript_reaches_aiohttp_as_its_status(mock_postscript: Postscript) -> None:
    with pytest.raises(aiohttp.ClientResponseError) as refused:
        asyncio.run(tag_subscriber(mock_postscript.secret_key, "+15555550100", "shipped"))
    assert refused.value.status == 503
