"""The shipping notifier against pslab's Postscript emulator, through its pytest plugin only.

`mock_postscript` serves https://api.postscript.io to the notifier as it is;
`postscript` hands it a client; `postscript_server` serves a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shipping_notifier import (
    EVENT_TYPE,
    AsyncShippingNotifier,
    PostscriptUnavailable,
    Shipment,
    ShippingNotifier,
)

from postscript_audience_lab.emulator.testing import Postscript

SHIPPED = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
ADA = Shipment(
    order_id="#1001",
    phone="(555) 555-0100",
    email="ada@example.com",
    carrier="UPS",
    tracking_number="1Z999AA10123456784",
    shipped_at=SHIPPED,
)


def shipment(order_id: str, phone: str | None = None, email: str | None = None) -> Shipment:
    return Shipment(order_id, phone, email, "DHL", f"JD{order_id[1:]}", SHIPPED)


def test_a_shipped_order_posts_one_event_for_the_shopper(mock_postscript: Postscript) -> None:
    ada = mock_postscript.seed(phone_number="+15555550100", email="ada@example.com")

    assert ShippingNotifier(mock_postscript.secret_key).notify(ADA) == ada.id

    (event,) = mock_postscript.events
    assert (event.type, event.subscriber_id, event.external_id) == (EVENT_TYPE, ada.id, "#1001")
    assert event.occurred_at == "2026-01-31 12:00:00.000000"
    assert event.properties["tracking_number"] == "1Z999AA10123456784"
    stored = mock_postscript.subscriber(phone="+15555550100")
    assert stored.properties == {"Last Tracking Number": "1Z999AA10123456784"}


def test_a_shopper_known_only_by_email_is_found_by_email(mock_postscript: Postscript) -> None:
    grace = mock_postscript.seed(email="Grace@Example.com")

    notified = ShippingNotifier(mock_postscript.secret_key).notify(
        shipment("#1002", phone="+15555550101", email="grace@example.com")
    )

    assert notified == grace.id
    assert [r.query for r in mock_postscript.requests if r.method == "GET"] == [
        "phone_number__eq=%2B15555550101",
        "email__eq=grace%40example.com",
    ]


def test_a_shopper_who_is_no_subscriber_is_skipped(mock_postscript: Postscript) -> None:
    assert ShippingNotifier(mock_postscript.secret_key).notify(ADA) is None
    assert mock_postscript.events == []


@pytest.mark.anyio
async def test_the_async_notifier_posts_the_same_event(mock_postscript: Postscript) -> None:
    ada = mock_postscript.seed(phone_number="+15555550100")
    notifier = AsyncShippingNotifier(mock_postscript.secret_key)

    assert await notifier.notify(ADA) == ada.id
    await notifier.aclose()

    assert [event.subscriber_id for event in mock_postscript.events] == [ada.id]


def test_the_notifier_uses_a_client_it_is_given(postscript: Postscript) -> None:
    ada = postscript.seed(phone_number="+15555550100")

    with postscript.client() as client:
        assert ShippingNotifier(postscript.secret_key, client=client).notify(ADA) == ada.id

    assert postscript.subscriber(id=ada.id).properties["Last Tracking Number"]


@pytest.mark.postscript(faults={"error_rate": 0.5, "error_statuses": [503], "seed": 4})
def test_server_errors_are_retried_until_the_event_is_posted(mock_postscript: Postscript) -> None:
    ada = mock_postscript.seed(phone_number="+15555550100")

    assert ShippingNotifier(mock_postscript.secret_key, backoff_s=0).notify(ADA) == ada.id

    assert len(mock_postscript.events) == 1
    assert 503 in {r.status for r in mock_postscript.requests}


@pytest.mark.postscript(faults={"error_rate": 1.0, "error_statuses": [500]})
def test_an_api_that_keeps_failing_is_reported(mock_postscript: Postscript) -> None:
    notifier = ShippingNotifier(mock_postscript.secret_key, attempts=3, backoff_s=0)

    with pytest.raises(PostscriptUnavailable, match="failed 3 times"):
        notifier.notify(ADA)

    assert len(mock_postscript.requests) == 3


@pytest.mark.postscript(secret_key="sk_live_of_the_shop")
def test_a_refused_key_is_reported_at_once(mock_postscript: Postscript) -> None:
    with pytest.raises(PostscriptUnavailable, match="refused the key"):
        ShippingNotifier("sk_live_revoked").notify(ADA)

    assert len(mock_postscript.requests) == 1


@pytest.mark.postscript(rate_limit=4)
def test_a_burst_over_the_rate_limit_is_paced_and_every_shipment_posted(
    mock_postscript: Postscript,
) -> None:
    mock_postscript.seed(phone_number="+15555550100")
    mock_postscript.seed(phone_number="+15555550101")
    notifier = ShippingNotifier(mock_postscript.secret_key, backoff_s=0.1)

    notifier.notify(shipment("#1", phone="+15555550100"))
    notifier.notify(shipment("#2", phone="+15555550101"))

    assert [event.external_id for event in mock_postscript.events] == ["#1", "#2"]
    assert 429 in {r.status for r in mock_postscript.requests}


def test_the_command_line_tool_notifies_through_a_real_server(
    postscript_server: Postscript, tmp_path: Path
) -> None:
    ada = postscript_server.seed(phone_number="+15555550100")
    order = tmp_path / "shipment.json"
    order.write_text(
        json.dumps(
            {
                "order_id": "#1001",
                "phone": "+15555550100",
                "carrier": "UPS",
                "tracking_number": "1Z1",
                "shipped_at": SHIPPED.isoformat(),
            }
        )
    )
    script = Path(__file__).with_name("shipping_notifier.py")
    environment = {
        "POSTSCRIPT_SECRET_KEY": postscript_server.secret_key,
        "POSTSCRIPT_BASE_URL": postscript_server.base_url,
    }

    done = subprocess.run(  # noqa: S603 -- this interpreter, our own script
        [sys.executable, str(script), str(order)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert json.loads(done.stdout) == {"order_id": "#1001", "subscriber_id": ada.id}
    assert [event.external_id for event in postscript_server.events] == ["#1001"]
