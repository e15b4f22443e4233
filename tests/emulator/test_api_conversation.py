"""The opt-in lifecycle, messages and webhook subscriptions through the API
(docs/design/emulator-choices.md).

Webhook deliveries go to the `api` fixture's stand-in receiver (no network);
`POST /_emulator/webhooks/flush` waits for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.model.messages import credits_for
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, seed

pytestmark = pytest.mark.anyio

ADA = "+15555550100"
HOOK = "https://hooks.example.com/ps"
NO_SUBSCRIPTIONS = {"promotional": {"can_send": False}, "transactional": {"can_send": False}}


async def subscribe(api: httpx.AsyncClient, event: str, url: str = HOOK) -> dict[str, Any]:
    response = await api.post("/api/v2/webhooks", json={"callback_url": url, "event": event})
    assert response.status_code == 200, response.text
    made: dict[str, Any] = response.json()
    return made


async def delivered(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = (await api.post("/_emulator/webhooks/flush")).json()
    assert answer["settled"] is True
    deliveries: list[dict[str, Any]] = answer["deliveries"]
    return deliveries


async def text(api: httpx.AsyncClient, body: str, phone: str = ADA) -> dict[str, Any]:
    response = await api.post("/_emulator/inbound", json={"phone_number": phone, "body": body})
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome


async def sign_up(api: httpx.AsyncClient, **fields: Any) -> str:
    response = await api.post("/api/v2/subscribers", json={"phone_number": ADA, **fields})
    assert response.status_code == 201, response.text
    pending_id: str = response.json()["id"]
    return pending_id


async def message(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post("/api/v2/message_requests", json={"body": "Hello", **body})


# -- the opt-in lifecycle ------------------------------------------------------------


@pytest.mark.parametrize("word", ["Y", "yes", " Yes ", "YES"])
async def test_yes_in_any_case_confirms_a_pending_subscriber(
    api: httpx.AsyncClient, word: str
) -> None:
    pending_id = await sign_up(api, keyword="vip", tags=["form"], properties={"size": "M"})
    outcome = await text(api, word)
    active = outcome["subscriber"]
    assert outcome["outcome"] == "confirmed"
    assert active["id"] != pending_id
    assert (active["tags"], active["properties"]) == (["form"], {"size": "M"})
    assert active["data"] == {"keyword_id": "kw_9b2d47c3"}
    fetched = (await api.get(f"/api/v2/subscribers/{active['id']}")).json()
    assert fetched["subscriptions"]["promotional"]["can_send"] is True
    assert (await api.get(f"/api/v2/subscribers/{pending_id}")).status_code == 404


async def test_a_pending_subscriber_is_invisible_to_lookups_patches_and_events(
    api: httpx.AsyncClient,
) -> None:
    pending_id = await sign_up(api, email="ada@example.com")
    by_phone = await api.get("/api/v2/subscribers", params={"phone_number__eq": ADA})
    patch = await api.patch(f"/api/v2/subscribers/{pending_id}", json={"tags": ["x"]})
    event = await api.post("/api/v2/events", json={"type": "Hi", "email": "ada@example.com"})
    again = await api.post("/api/v2/subscribers", json={"phone_number": ADA})
    assert by_phone.json()["subscribers"] == []
    assert (patch.status_code, event.status_code) == (404, 404)
    assert again.status_code == 400  # the phone is taken while it waits


async def test_the_opt_in_webhook_carries_the_active_id(api: httpx.AsyncClient) -> None:
    hook = await subscribe(api, "shop.subscriber.opt_in")
    pending_id = await sign_up(api)
    active_id = (await text(api, "yes"))["subscriber"]["id"]
    (sent,) = await delivered(api)
    payload = sent["payload"]
    assert (sent["event"], sent["state"], sent["webhook_id"]) == (
        "shop.subscriber.opt_in",
        "delivered",
        hook["id"],
    )
    assert payload["event_data"]["subscriber_id"] == active_id
    assert payload["event_data"]["pending_subscriber_id"] == pending_id
    assert payload["resource_type"] == "shop"
    assert set(payload) == {
        "webhook_id",
        "resource_type",
        "resource_id",
        "event_time",
        "event",
        "event_data",
    }


@pytest.mark.parametrize(
    "word", ["STOP", "stop", "StopAll", "unsubscribe", "cancel", "END", "quit"]
)
async def test_an_opt_out_word_opts_an_active_subscriber_out_of_everything(
    api: httpx.AsyncClient, word: str
) -> None:
    await subscribe(api, "shop.subscriber.opt_out")
    await subscribe(api, "shop.incoming_message")
    (ada,) = await seed(api, {"phone_number": ADA})
    outcome = await text(api, word)
    stored = (await api.get(f"/api/v2/subscribers/{ada['id']}")).json()
    events = {d["event"]: d["payload"]["event_data"] for d in await delivered(api)}
    assert outcome["outcome"] == "opted_out"
    assert stored["subscriptions"] == NO_SUBSCRIPTIONS
    assert events["shop.subscriber.opt_out"]["subscriber_id"] == ada["id"]
    assert events["shop.subscriber.opt_out"]["source"] == "inbound_text"
    assert events["shop.incoming_message"]["is_opt_out"] is True


async def test_stop_from_a_pending_phone_cancels_the_signup(api: httpx.AsyncClient) -> None:
    await subscribe(api, "shop.subscriber.opt_out")
    await sign_up(api)
    outcome = await text(api, "STOP")
    state = (await api.get("/_emulator/state")).json()
    assert outcome["outcome"] == "signup_cancelled"
    assert state["subscribers"] == []
    assert await delivered(api) == []  # never opted in, so no opt-out


async def test_any_other_text_is_an_incoming_message(api: httpx.AsyncClient) -> None:
    await subscribe(api, "shop.incoming_message")
    (ada,) = await seed(api, {"phone_number": ADA, "shopify_customer_id": 77})
    await text(api, "yes please, where is my parcel?")
    await text(api, "hi", phone="+15555550199")  # from nobody
    first, second = [d["payload"]["event_data"] for d in await delivered(api)]
    assert first["subscriber_id"] == ada["id"]
    assert first["shopify_customer_id"] == 77
    assert first["is_opt_out"] is False
    assert first["body"] == "yes please, where is my parcel?"
    assert first["from_number"] == ADA
    assert first["id"].startswith("im_")
    assert second["subscriber_id"] is None


async def test_compliance_opt_outs_are_reported_once(api: httpx.AsyncClient) -> None:
    await subscribe(api, "shop.subscriber.opt_out")
    ada, bob = await seed(
        api, {"phone_number": ADA}, {"phone_number": "+15555550101", "email": "bob@x.org"}
    )
    for _ in range(2):  # the second unsubscribe changes nothing and reports nothing
        await api.patch(
            "/api/v2/compliance/unsubscribe", json={"postscript_subscriber_id": ada["id"]}
        )
    await api.patch("/api/v2/compliance/redact", json={"email": "bob@x.org"})
    sources = [
        (d["payload"]["event_data"]["subscriber_id"], d["payload"]["event_data"]["source"])
        for d in await delivered(api)
    ]
    assert sources == [(ada["id"], "compliance_unsubscribe"), (bob["id"], "compliance_redact")]


async def test_inbound_needs_a_phone_and_a_body(api: httpx.AsyncClient) -> None:
    response = await api.post("/_emulator/inbound", json={"phone_number": "nope"})
    locs = [e["loc"] for e in response.json()["errors"]]
    assert response.status_code == 400
    assert locs == [["body", "phone_number"], ["body", "body"]]


# -- messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("promotional", "transactional", "category", "status", "code"),
    [
        (True, True, "promotional", "sent", 0),
        (False, True, "promotional", "failed", 1),
        (False, True, "transactional", "sent", 0),
        (False, True, "conversational", "sent", 0),
        (True, False, "transactional", "failed", 1),
        (True, False, "conversational", "failed", 1),
    ],
)
async def test_a_message_goes_out_only_in_a_category_the_subscriber_may_receive(
    api: httpx.AsyncClient,
    promotional: bool,
    transactional: bool,
    category: str,
    status: str,
    code: int,
) -> None:
    subscriptions = {
        "promotional": {"can_send": promotional},
        "transactional": {"can_send": transactional},
    }
    await seed(api, {"id": "s_ada", "phone_number": ADA, "subscriptions": subscriptions})
    answer = (await message(api, subscriber_id="s_ada", category=category)).json()
    texted = (await api.get("/_emulator/messages")).json()["sent_messages"]
    assert (answer["status"], answer["status_code"]) == (status, code)
    assert len(texted) == (1 if status == "sent" else 0)
    assert (answer["sent_message"] is None) is (status == "failed")


async def test_a_message_to_a_pending_phone_fails_until_it_confirms(
    api: httpx.AsyncClient,
) -> None:
    await sign_up(api)
    early = (await message(api, phone=ADA, category="transactional")).json()
    await text(api, "Y")
    late = (await message(api, phone=ADA, category="transactional")).json()
    assert (early["status"], early["status_code"], early["subscriber_id"]) == ("failed", 2, None)
    assert late["status"] == "sent"


async def test_a_message_to_nobody_is_a_404_and_nothing_is_kept(api: httpx.AsyncClient) -> None:
    by_id = await message(api, subscriber_id="s_nobody")
    by_phone = await message(api, phone="+15555550199")
    kept = (await api.get("/_emulator/messages")).json()
    assert (by_id.status_code, by_phone.status_code) == (404, 404)
    assert kept == {"message_requests": [], "sent_messages": []}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"phone": ADA}, ["body", "body"]),
        ({"body": "x"}, ["body"]),
        ({"body": "x", "phone": ADA, "category": "marketing"}, ["body", "category"]),
        ({"body": "x", "phone": ADA, "scheduled_at": "soon"}, ["body", "scheduled_at"]),
        ({"body": "x", "phone": ADA, "media_url": "pic.png"}, ["body", "media_url"]),
        ({"body": "x", "phone": ADA, "country": "USA"}, ["body", "country"]),
        ({"body": "  ", "phone": ADA}, ["body", "body"]),
    ],
)
async def test_a_bad_message_body_is_a_400(
    api: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    await seed(api, {"phone_number": ADA})
    response = await api.post("/api/v2/message_requests", json=body)
    assert response.status_code == 400
    assert [e["loc"] for e in response.json()["errors"]] == [loc]


async def test_a_scheduled_message_is_sent_when_the_clock_reaches_it(
    api: httpx.AsyncClient,
) -> None:
    await seed(api, {"id": "s_ada", "phone_number": ADA})
    now = (await api.get("/_emulator/clock")).json()["now"]
    later = now.replace(now[:4], str(int(now[:4]) + 1), 1)  # a year on
    made = (await message(api, subscriber_id="s_ada", scheduled_at=later)).json()
    before = (await api.get(f"/api/v2/message_requests/{made['id']}")).json()
    await api.post("/_emulator/clock", json={"advance_s": 367 * 86_400})
    after = (await api.get(f"/api/v2/message_requests/{made['id']}")).json()
    assert (made["status"], before["status"], after["status"]) == ("scheduled", "scheduled", "sent")
    sent = await api.get(f"/api/v2/sent_messages/{after['sent_message']['id']}")
    assert sent.json()["body"] == "Hello"


async def test_a_scheduled_message_is_judged_when_it_is_due_not_when_asked(
    api: httpx.AsyncClient,
) -> None:
    await seed(api, {"id": "s_ada", "phone_number": ADA})
    made = (await message(api, subscriber_id="s_ada", scheduled_at="2999-01-01T00:00:00Z")).json()
    await text(api, "STOP")
    for _ in range(100):
        await api.post("/_emulator/clock", json={"advance_s": 10 * 366 * 86_400})
    after = (await api.get(f"/api/v2/message_requests/{made['id']}")).json()
    assert (after["status"], after["status_code"]) == ("failed", 1)


@pytest.mark.parametrize(
    ("body", "media", "credits"),
    [
        ("a" * 160, None, 1),
        ("a" * 161, None, 2),
        ("a" * 306, None, 2),
        ("a" * 307, None, 3),
        ("[" * 80, None, 1),  # two septets each
        ("é" * 160, None, 1),  # é is GSM-7
        ("ā" * 70, None, 1),  # ā is not: UCS-2
        ("ā" * 71, None, 2),
        ("hi", "https://example.com/a.png", 3),
    ],
)
def test_credits_count_segments_as_carriers_do(body: str, media: str | None, credits: int) -> None:
    assert credits_for(body, media) == credits


async def test_the_clock_only_moves_forward_within_bounds(api: httpx.AsyncClient) -> None:
    for bad in (-1, "1", True, 10**12, None):
        response = await api.post("/_emulator/clock", json={"advance_s": bad})
        assert response.status_code == 400, bad
    assert (await api.get("/_emulator/clock")).json()["offset_s"] == 0


# -- webhook subscriptions ---------------------------------------------------------------


async def test_subscriptions_can_be_listed_read_updated_and_deleted(
    api: httpx.AsyncClient,
) -> None:
    made = await subscribe(api, "shop.test")
    path = f"/api/v2/webhooks/{made['id']}"
    listed = (await api.get("/api/v2/webhooks")).json()["webhook_subscriptions"]
    updated = await api.patch(
        path, json={"callback_url": "https://b.example.com/x", "headers": {"X-A": "1"}}
    )
    read = (await api.get(path)).json()
    deleted = await api.delete(path)
    assert listed == [made]
    assert updated.status_code == 200
    assert read == updated.json()
    assert (read["callback_url"], read["headers"], read["event"]) == (
        "https://b.example.com/x",
        {"X-A": "1"},
        "shop.test",
    )
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert (await api.get(path)).status_code == 404
    assert (await api.delete(path)).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "http://localhost:8080/x",
        "http://127.0.0.1/x",
        "http://127.9.9.9:1/x",
        "http://[::1]/x",
    ],
)
async def test_https_or_loopback_callback_urls_are_taken(api: httpx.AsyncClient, url: str) -> None:
    response = await api.post("/api/v2/webhooks", json={"callback_url": url, "event": "shop.test"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "http://10.0.0.1/x",
        "http://localhost.example.com/x",
        "ftp://127.0.0.1/x",
        "https:///x",
        "hooks.example.com",
        "https://a.example.com/" + "x" * 2048,
        "https://a.example.com:99999/x",
        "https://a.example.com/a b",
    ],
)
async def test_other_callback_urls_are_a_400(api: httpx.AsyncClient, url: str) -> None:
    response = await api.post("/api/v2/webhooks", json={"callback_url": url, "event": "shop.test"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "callback_url"]


@pytest.mark.parametrize(
    ("headers", "loc"),
    [
        ({"Postscript-Signature": "x"}, ["body", "headers.Postscript-Signature"]),
        ({"content-type": "text/plain"}, ["body", "headers.content-type"]),
        ({"Bad Name": "x"}, ["body", "headers.Bad Name"]),
        ({"X-A": "line\nbreak"}, ["body", "headers.X-A"]),
        ({"X-A": 1}, ["body", "headers.X-A"]),
        ([["X-A", "1"]], ["body", "headers"]),
    ],
)
async def test_custom_headers_may_not_replace_ours_or_break_the_request(
    api: httpx.AsyncClient, headers: Any, loc: list[str]
) -> None:
    body = {"callback_url": HOOK, "event": "shop.test", "headers": headers}
    response = await api.post("/api/v2/webhooks", json=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == loc


async def test_an_unknown_event_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v2/webhooks", json={"callback_url": HOOK, "event": "shop.x"})
    assert response.status_code == 400


@pytest.mark.parametrize("spelling", ["shop.email_collected", "shop.shop.email_collected"])
async def test_both_spellings_of_email_collected_receive_its_test_delivery(
    api: httpx.AsyncClient, spelling: str
) -> None:
    await subscribe(api, spelling)
    await subscribe(api, "shop.test")
    answer = await api.post("/api/v2/webhooks/test", json={"event": "shop.email_collected"})
    (sent,) = await delivered(api)
    assert (answer.status_code, answer.json()) == (202, {"message": "OK"})
    assert sent["event"] == "shop.email_collected"
    assert sent["payload"]["event_data"]["email"] == "subscriber@example.com"


async def test_the_example_needs_a_known_event(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v2/webhooks/example")
    unknown = await api.get("/api/v2/webhooks/example", params={"event": "shop.x"})
    example = await api.get("/api/v2/webhooks/example", params={"event": "shop.subscriber.opt_in"})
    assert (missing.status_code, unknown.status_code, example.status_code) == (400, 400, 200)
    assert example.json()["event_data"]["subscriber_id"].startswith("s_")


async def test_each_shop_has_its_own_token_and_subscriptions(api: httpx.AsyncClient) -> None:
    shops = {
        "shops": [
            {"id": "shop_a", "secret_key": "sk_test_pslab"},
            {"id": "shop_b", "secret_key": "sk_b"},
        ]
    }
    assert (await api.put("/_emulator/shops", json=shops)).status_code == 200
    await subscribe(api, "shop.test")
    other = {"Authorization": "Bearer sk_b"}
    token_a = (await api.get("/api/v2/webhooks/token")).json()["token"]
    token_b = (await api.get("/api/v2/webhooks/token", headers=other)).json()["token"]
    listed_b = (await api.get("/api/v2/webhooks", headers=other)).json()
    assert token_a != token_b
    assert token_a == (await api.get("/api/v2/webhooks/token")).json()["token"]
    assert listed_b == {"webhook_subscriptions": []}


async def test_reset_forgets_subscriptions_messages_and_deliveries(
    api: httpx.AsyncClient,
) -> None:
    await subscribe(api, "shop.incoming_message")
    await seed(api, {"id": "s_ada", "phone_number": ADA})
    await message(api, subscriber_id="s_ada")
    await text(api, "hello")
    await delivered(api)
    await api.post("/_emulator/reset")
    assert (await api.get("/api/v2/webhooks")).json() == {"webhook_subscriptions": []}
    assert (await api.get("/_emulator/messages")).json()["sent_messages"] == []
    assert (await api.get("/_emulator/webhooks/deliveries")).json() == {"deliveries": []}


async def test_a_pending_subscriber_and_its_confirmation_survive_a_restart(
    tmp_path: Path,
) -> None:
    state = tmp_path / "emulator.sqlite"

    def client() -> httpx.AsyncClient:
        app = create_app(EmulatorConfig(rate_limit_rps=0, state_path=state))
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://emulator",
            headers={"Authorization": f"Bearer {SECRET}"},
        )

    async with client() as api:
        pending_id = await sign_up(api)
    async with client() as api:
        (kept,) = (await api.get("/_emulator/state")).json()["subscribers"]
        assert (kept["id"], kept["pending"]) == (pending_id, True)
        active_id = (await text(api, "yes"))["subscriber"]["id"]
    async with client() as api:
        (kept,) = (await api.get("/_emulator/state")).json()["subscribers"]
        assert kept["id"] == active_id
        assert "pending" not in kept
