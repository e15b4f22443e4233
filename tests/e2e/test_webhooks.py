"""Webhooks that really arrive: the emulator on a loopback port delivers to a tiny receiver.

The receiver is a Starlette app on a free loopback port (uvicorn, in a thread)
that records every delivery and answers from a script of statuses. Waits are
bounded by events (the receiver saw the n-th request, or the emulator's flush
returned), never by sleeping a guessed time (docs/design/emulator.md,
docs/design/emulator-choices.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import (
    serve_app_in_background,
    serve_in_background,
)

KEY = "sk_e2e_webhooks"
WAIT_S = 30.0  # an upper bound for an event that normally takes milliseconds


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """Records each delivery; answers the next status of `script` (then 200s)."""

    script: list[int] = field(default_factory=list)
    hold: threading.Event | None = None  # when set up, each answer waits for it
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _seen: threading.Condition = field(default_factory=threading.Condition)

    async def deliver(self, request: Request) -> Response:
        received = Received(dict(request.headers), await request.json())
        with self._seen:
            self.received.append(received)
            status = self.script.pop(0) if self.script else 200
            self._seen.notify_all()
        if self.hold is not None:
            await _wait_in_thread(self.hold)
        return JSONResponse({}, status_code=status)

    def wait_for(self, count: int) -> list[Received]:
        with self._seen:
            arrived = self._seen.wait_for(lambda: len(self.received) >= count, timeout=WAIT_S)
            assert arrived, f"the receiver got {len(self.received)} deliveries, not {count}"
            return list(self.received)


async def _wait_in_thread(event: threading.Event) -> None:
    from starlette.concurrency import run_in_threadpool

    assert await run_in_threadpool(event.wait, WAIT_S)


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    app = Starlette(routes=[Route("/postscript", receiver.deliver, methods=["POST"])])
    with serve_app_in_background(app) as base_url:
        receiver.url = f"{base_url}/postscript"
        try:
            yield receiver
        finally:  # a delivery held open would keep the server from stopping
            if receiver.hold is not None:
                receiver.hold.set()


@contextmanager
def postscript(**config: Any) -> Iterator[httpx.Client]:
    """A served emulator and a client holding its key (admin calls need none)."""
    settings = EmulatorConfig(secret_key=KEY, rate_limit_rps=0, **config)
    with (
        serve_in_background(settings) as base_url,
        httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT_S
        ) as client,
    ):
        yield client


def subscribe(client: httpx.Client, url: str, event: str) -> dict[str, Any]:
    response = client.post(
        "/api/v2/webhooks",
        json={"callback_url": url, "event": event, "headers": {"X-Receiver-Key": "r-42"}},
    )
    assert response.status_code == 200, response.text
    subscription: dict[str, Any] = response.json()
    return subscription


def text(client: httpx.Client, phone: str, body: str) -> dict[str, Any]:
    response = client.post("/_emulator/inbound", json={"phone_number": phone, "body": body})
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome


def flush(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.post("/_emulator/webhooks/flush")
    assert response.status_code == 200, response.text
    assert response.json()["settled"] is True
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


def test_signup_confirm_and_stop_arrive_signed_with_the_active_id() -> None:
    with receiving(Receiver()) as receiver, postscript() as client:
        opt_in = subscribe(client, receiver.url, "shop.subscriber.opt_in")
        opt_out = subscribe(client, receiver.url, "shop.subscriber.opt_out")
        token = client.get("/api/v2/webhooks/token").json()["token"]

        created = client.post(
            "/api/v2/subscribers",
            json={"phone_number": "+15555550123", "keyword": "JOIN", "email": "ada@example.com"},
        )
        assert created.status_code == 201
        pending_id = created.json()["id"]
        assert client.get(f"/api/v2/subscribers/{pending_id}").status_code == 404

        assert text(client, "(555) 555-0123", "Yes")["outcome"] == "confirmed"
        flush(client)
        (confirmed,) = receiver.wait_for(1)
        assert confirmed.headers["postscript-signature"] == token
        assert confirmed.headers["x-receiver-key"] == "r-42"
        assert confirmed.headers["content-type"] == "application/json"
        assert confirmed.body["webhook_id"] == opt_in["id"]
        assert confirmed.body["event"] == "shop.subscriber.opt_in"
        assert confirmed.body["resource_type"] == "shop"
        active_id = confirmed.body["event_data"]["subscriber_id"]
        assert active_id != pending_id
        assert confirmed.body["event_data"]["pending_subscriber_id"] == pending_id
        fetched = client.get(f"/api/v2/subscribers/{active_id}")
        assert fetched.status_code == 200
        assert fetched.json()["subscriptions"]["promotional"]["can_send"] is True

        assert text(client, "+15555550123", "STOP")["outcome"] == "opted_out"
        flush(client)
        stopped = receiver.wait_for(2)[1]
        assert stopped.headers["postscript-signature"] == token
        assert stopped.body["webhook_id"] == opt_out["id"]
        assert stopped.body["event"] == "shop.subscriber.opt_out"
        assert stopped.body["event_data"]["subscriber_id"] == active_id
        promo = client.post(
            "/api/v2/message_requests", json={"subscriber_id": active_id, "body": "20% off"}
        )
        assert promo.status_code == 202
        assert promo.json()["status"] == "failed"
        assert promo.json()["sent_message"] is None
        sent = client.get("/_emulator/messages").json()["sent_messages"]
        assert sent == []
        assert len(receiver.received) == 2  # nobody subscribed to incoming messages


def test_a_receiver_failing_twice_gets_the_event_three_times_and_the_journal_shows_it() -> None:
    # Real (short) backoff, no flush: the retries happen on their own, in the background.
    with (
        receiving(Receiver(script=[500, 500, 200])) as receiver,
        postscript(webhook_retry_delays=(0.05, 0.05, 0.05)) as client,
    ):
        subscribe(client, receiver.url, "shop.incoming_message")
        text(client, "+15555550124", "Where is my order?")
        arrivals = receiver.wait_for(3)
        assert [r.body["event_data"]["body"] for r in arrivals] == ["Where is my order?"] * 3
        assert len({r.body["event_data"]["id"] for r in arrivals}) == 1  # one event, resent
        (delivery,) = flush(client)  # only waits for the journal to settle
    assert delivery["state"] == "delivered"
    assert [a["status"] for a in delivery["attempts"]] == [500, 500, 200]
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    assert "postscript-signature" not in str(delivery).lower()  # the token is not journaled


def test_a_receiver_that_always_fails_is_tried_a_bounded_number_of_times() -> None:
    with (
        receiving(Receiver(script=[503] * 10)) as receiver,
        postscript(webhook_retry_delays=(60.0, 60.0)) as client,  # flush skips the minutes
    ):
        subscribe(client, receiver.url, "shop.incoming_message")
        text(client, "+15555550125", "hello")
        (delivery,) = flush(client)
        assert len(receiver.received) == 3
    assert delivery["state"] == "failed"
    assert [a["status"] for a in delivery["attempts"]] == [503, 503, 503]


def test_a_slow_receiver_never_holds_up_the_api_call() -> None:
    hold = threading.Event()
    with receiving(Receiver(hold=hold)) as receiver, postscript() as client:
        subscribe(client, receiver.url, "shop.subscriber.opt_out")
        (ada,) = client.post(
            "/_emulator/subscribers", json={"subscribers": [{"phone_number": "+15555550126"}]}
        ).json()["subscribers"]
        answer = client.patch(
            "/api/v2/compliance/unsubscribe", json={"postscript_subscriber_id": ada["id"]}
        )
        # answered while the receiver still holds the delivery open
        assert answer.status_code == 202
        (held,) = receiver.wait_for(1)
        assert not hold.is_set()
        assert held.body["event_data"]["source"] == "compliance_unsubscribe"
        hold.set()
        (delivery,) = flush(client)
        assert delivery["state"] == "delivered"


def test_a_message_reaches_an_active_subscriber_and_not_an_opted_out_one() -> None:
    with postscript() as client:
        seeded = client.post(
            "/_emulator/subscribers",
            json={
                "subscribers": [
                    {"id": "s_active", "phone_number": "+15555550127"},
                    {
                        "id": "s_gone",
                        "phone_number": "+15555550128",
                        "subscriptions": {
                            "promotional": {"can_send": False},
                            "transactional": {"can_send": False},
                        },
                    },
                ]
            },
        )
        assert seeded.status_code == 200, seeded.text
        to_active = client.post(
            "/api/v2/message_requests", json={"phone": "555-555-0127", "body": "Back in stock"}
        )
        to_gone = client.post(
            "/api/v2/message_requests", json={"subscriber_id": "s_gone", "body": "Back in stock"}
        )
        assert to_active.json()["status"] == "sent"
        assert to_gone.json()["status"] == "failed"
        sent_id = to_active.json()["sent_message"]["id"]
        assert client.get(f"/api/v2/sent_messages/{sent_id}").json()["body"] == "Back in stock"
        texted = client.get("/_emulator/messages").json()["sent_messages"]
    assert [(m["phone"], m["body"]) for m in texted] == [("+15555550127", "Back in stock")]


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/postscript", "ftp://127.0.0.1/x", "not a url"],
)
def test_a_callback_url_must_be_https_unless_it_is_loopback(url: str) -> None:
    with postscript() as client:
        refused = client.post("/api/v2/webhooks", json={"callback_url": url, "event": "shop.test"})
        local = client.post(
            "/api/v2/webhooks", json={"callback_url": "http://[::1]:9/x", "event": "shop.test"}
        )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["loc"] == ["body", "callback_url"]
    assert local.status_code == 200
