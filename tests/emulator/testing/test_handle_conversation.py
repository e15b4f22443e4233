"""The handle's side of the conversation: a person's texts, what was texted, webhook deliveries.

Deliveries here go to a loopback port nothing listens on (refused at once), so
they fail without touching the network; `wait_for_webhooks` makes that quick.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from postscript_audience_lab.emulator.testing import (
    InboundText,
    Message,
    Postscript,
    WebhookDelivery,
    serve_postscript,
)

ADA = "+15555550100"


@pytest.fixture(params=["in_process", "served"])
def postscript(request: pytest.FixtureRequest) -> Iterator[Postscript]:
    if request.param == "in_process":
        with Postscript.in_process(rate_limit=0) as handle:
            yield handle
    else:
        with serve_postscript(rate_limit=0) as handle:
            yield handle


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL whose port was free a moment ago: a delivery there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def sign_up(postscript: Postscript, phone: str = ADA) -> str:
    with postscript.client() as client:
        created = client.post("/api/v2/subscribers", json={"phone_number": phone})
    assert created.status_code == 201, created.text
    pending_id: str = created.json()["id"]
    return pending_id


def test_confirm_turns_the_pending_subscriber_active_under_a_new_id(
    postscript: Postscript,
) -> None:
    pending_id = sign_up(postscript)
    (pending,) = postscript.subscribers
    assert pending.pending
    assert not pending.can_receive_promotional

    active = postscript.confirm("(555) 555-0100")

    assert active.id != pending_id
    assert active.id.startswith("s_")
    assert not active.pending
    assert active.can_receive_promotional
    assert [s.id for s in postscript.subscribers] == [active.id]
    with postscript.client() as client:
        assert client.get(f"/api/v2/subscribers/{pending_id}").status_code == 404
        assert client.get(f"/api/v2/subscribers/{active.id}").status_code == 200


def test_confirm_without_a_pending_signup_raises_lookup_error(postscript: Postscript) -> None:
    postscript.seed(phone_number=ADA)
    with pytest.raises(LookupError, match="waiting to confirm"):
        postscript.confirm(ADA)


def test_inbound_text_says_what_the_text_did(postscript: Postscript) -> None:
    ada = postscript.seed(phone_number=ADA)
    said = postscript.inbound_text(ADA, "Is my order late?")
    stopped = postscript.inbound_text(ADA, " stop ")
    assert said == InboundText("message", said.subscriber, ("shop.incoming_message",))
    assert stopped.outcome == "opted_out"
    assert stopped.events == ("shop.subscriber.opt_out", "shop.incoming_message")
    assert stopped.subscriber is not None
    assert stopped.subscriber.id == ada.id
    assert not postscript.subscriber(id=ada.id).can_receive_promotional


def test_messages_shows_what_each_phone_was_texted(postscript: Postscript) -> None:
    ada = postscript.seed(phone_number=ADA)
    postscript.seed(
        phone_number="+15555550101",
        subscriptions={"promotional": {"can_send": False}, "transactional": {"can_send": True}},
    )
    with postscript.client() as client:
        for phone, category in ((ADA, "promotional"), ("+15555550101", "promotional")):
            answer = client.post(
                "/api/v2/message_requests",
                json={"phone": phone, "body": "Sale!", "category": category},
            )
            assert answer.status_code == 202, answer.text

    (texted,) = postscript.messages
    assert isinstance(texted, Message)
    assert (texted.phone, texted.body, texted.subscriber_id) == (ADA, "Sale!", ada.id)
    assert postscript.messages_to("555 555 0100") == [texted]
    assert postscript.messages_to("+15555550101") == []
    sent, refused = postscript.message_requests
    assert (sent.status, refused.status) == ("sent", "failed")
    assert refused.reason == "the subscriber may not receive this category of message"


def test_a_scheduled_message_waits_for_the_emulated_clock(postscript: Postscript) -> None:
    postscript.seed(phone_number=ADA)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with postscript.client() as client:
        scheduled = client.post(
            "/api/v2/message_requests",
            json={"phone": ADA, "body": "Tomorrow", "scheduled_at": tomorrow.isoformat()},
        )
    assert scheduled.json()["status"] == "scheduled"
    postscript.advance_clock(3600)
    assert postscript.messages == []
    postscript.advance_clock(86_400)
    assert [m.body for m in postscript.messages] == ["Tomorrow"]
    (request,) = postscript.message_requests
    assert request.status == "sent"


def test_webhook_deliveries_journal_every_attempt(
    postscript: Postscript, closed_port_url: str
) -> None:
    with postscript.client() as client:
        hook = client.post(
            "/api/v2/webhooks",
            json={"callback_url": closed_port_url, "event": "shop.incoming_message"},
        ).json()
    postscript.seed(phone_number=ADA)
    postscript.inbound_text(ADA, "hello")

    (delivery,) = postscript.wait_for_webhooks()

    assert isinstance(delivery, WebhookDelivery)
    assert delivery.webhook_id == hook["id"]
    assert delivery.event == "shop.incoming_message"
    assert delivery.event_data["body"] == "hello"
    assert delivery.state == "failed"
    # The first and twelve retries, 5 minutes apart on the emulator's clock
    # (docs/design/emulator-choices.md).
    assert len(delivery.attempts) == 13
    gaps = [(b.time - a.time).total_seconds() for a, b in pairwise(delivery.attempts)]
    assert [round(gap) for gap in gaps] == [300] * 12
    assert all(a.status is None and a.error for a in delivery.attempts)
    assert postscript.webhook_deliveries == [delivery]
    postscript.reset()
    assert postscript.webhook_deliveries == []


def test_advancing_the_clock_makes_the_webhook_retries_due_by_then(
    postscript: Postscript, closed_port_url: str
) -> None:
    with postscript.client() as client:
        client.post(
            "/api/v2/webhooks",
            json={"callback_url": closed_port_url, "event": "shop.incoming_message"},
        )
    postscript.seed(phone_number=ADA)
    postscript.inbound_text(ADA, "hello")
    postscript.advance_clock(0)  # the first attempt is made at once
    assert [len(d.attempts) for d in postscript.webhook_deliveries] == [1]
    postscript.advance_clock(299)
    assert [len(d.attempts) for d in postscript.webhook_deliveries] == [1]
    postscript.advance_clock(1)
    (delivery,) = postscript.webhook_deliveries
    assert (len(delivery.attempts), delivery.state) == (2, "pending")
