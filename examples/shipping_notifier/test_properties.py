"""A property of the notifier over any subscribers pslab's strategies draw.

It needs the `testing` extra: `pip install 'postscript-audience-lab[testing]'`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip(
    "hypothesis", reason="the property tests need postscript-audience-lab[testing] (hypothesis)"
)

from hypothesis import given, settings
from shipping_notifier import Shipment, ShippingNotifier

from postscript_audience_lab.emulator.testing import SubscriberSeed, mock_postscript
from postscript_audience_lab.emulator.testing.strategies import subscriber_lists


@settings(max_examples=20, deadline=None)
@given(shoppers=subscriber_lists(min_size=1, max_size=5))
def test_every_subscribers_shipment_posts_one_event_for_a_subscriber_of_that_phone_or_email(
    shoppers: list[SubscriberSeed],
) -> None:
    with mock_postscript(rate_limit=0) as postscript:
        postscript.seed_many(shoppers)
        notifier = ShippingNotifier(postscript.secret_key)
        for number, shopper in enumerate(shoppers):
            order = f"#{number}"
            shipped = Shipment(
                order,
                shopper.get("phone_number"),
                shopper.get("email"),
                "UPS",
                f"1Z{number}",
                datetime(2026, 1, 31, tzinfo=UTC),
            )
            notified = notifier.notify(shipped)
            if shipped.phone:
                assert notified == postscript.subscriber(phone=shipped.phone).id
            else:
                email = postscript.subscriber(id=str(notified)).email or ""
                assert email.lower() == str(shipped.email).lower()
        assert [event.external_id for event in postscript.events] == [
            f"#{n}" for n in range(len(shoppers))
        ]
