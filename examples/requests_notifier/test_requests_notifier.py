"""The requests notifier under `mock_postscript`, unchanged: the real URL is served in process."""

from __future__ import annotations

import urllib.request

import pytest
import requests
from requests_notifier import notify_shipped

from postscript_audience_lab.emulator.testing import Postscript, RealPostscriptBlocked


def test_a_shipped_order_posts_one_event(mock_postscript: Postscript) -> None:
    ada = mock_postscript.seed(phone_number="+15555550100")
    assert notify_shipped(mock_postscript.secret_key, "+15555550100", "#1001") == ada.id
    assert [(e.type, e.external_id) for e in mock_postscript.events] == [("Order_Shipped", "#1001")]


def test_a_shopper_who_is_not_a_subscriber_is_skipped(mock_postscript: Postscript) -> None:
    assert notify_shipped(mock_postscript.secret_key, "+15555550199", "#1002") is None
    assert mock_postscript.events == []


@pytest.mark.postscript(faults={"error_rate": 1.0, "error_statuses": [503]})
def test_a_failing_postscript_is_an_http_error(mock_postscript: Postscript) -> None:
    with pytest.raises(requests.HTTPError):
        notify_shipped(mock_postscript.secret_key, "+15555550100", "#1003")


@pytest.mark.postscript(expect_unrouted=True)
def test_no_other_client_reaches_the_real_postscript(mock_postscript: Postscript) -> None:
    with pytest.raises(RealPostscriptBlocked, match="the mock_postscript fixture is active"):
        urllib.request.urlopen("https://api.postscript.io/api/v2/me", timeout=5)
