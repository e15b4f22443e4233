"""The `Postscript` handle: typed admin calls on an in-process, a served and a CLI emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import respx

from postscript_audience_lab.emulator.testing import (
    ApiRequest,
    EmulatorAdminError,
    Event,
    Faults,
    Keyword,
    Postscript,
    Subscriber,
    serve_postscript,
)
from tests.emulator.test_cli_emulator import running_emulator

ADA = "+15555550100"


@pytest.fixture(params=["in_process", "served"])
def postscript(request: pytest.FixtureRequest) -> Iterator[Postscript]:
    """The same tests, on an emulator in this process and on one behind a loopback URL."""
    if request.param == "in_process":
        with Postscript.in_process(rate_limit=0) as handle:
            yield handle
    else:
        with serve_postscript(rate_limit=0) as handle:
            yield handle


def post_event(postscript: Postscript, **body: object) -> httpx.Response:
    with postscript.client() as client:
        return client.post("/api/v2/events", json={"type": "Order_Shipped", **body})


def test_seed_takes_keyword_fields_and_returns_the_stored_subscriber(
    postscript: Postscript,
) -> None:
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    ada = postscript.seed(
        phone_number="(555) 555-0100",
        email="Ada@Example.com",
        properties={"Segment Audiences": ["vip"]},
        tags=["synced"],
        id="s_ada",
        created_at=created,
        shopify_customer_id=42,
        subscriptions={"promotional": {"can_send": False}, "transactional": {"can_send": True}},
    )
    assert isinstance(ada, Subscriber)
    assert (ada.id, ada.ps_id, ada.phone_number, ada.email) == ("s_ada", 1, ADA, "Ada@Example.com")
    assert ada.properties == {"Segment Audiences": ["vip"]}
    assert ada.tags == ["synced"]
    assert ada.created_at == created
    assert ada.shopify_customer_id == 42
    assert ada.subscriptions["promotional"] == {"can_send": False}
    assert postscript.subscribers == [ada]


def test_seed_many_stores_all_or_none_and_says_which_field_was_wrong(
    postscript: Postscript,
) -> None:
    stored = postscript.seed_many([{"phone_number": ADA}, {"email": "grace@example.com"}])
    assert [s.ps_id for s in stored] == [1, 2]
    with pytest.raises(
        EmulatorAdminError, match=r"subscribers\.1\.phone_number: must be a complete"
    ):
        postscript.seed_many([{"email": "alan@example.com"}, {"phone_number": "12"}])
    assert [s.id for s in postscript.subscribers] == [s.id for s in stored]


def test_subscriber_finds_one_by_phone_in_any_spelling_email_in_any_case_or_id(
    postscript: Postscript,
) -> None:
    ada = postscript.seed(phone_number=ADA, email="ada@example.com")
    postscript.seed(phone_number="+15555550101", email="grace@example.com")
    assert postscript.subscriber(phone="(555) 555-0100") == ada
    assert postscript.subscriber(phone="15555550100") == ada
    assert postscript.subscriber(email=" ADA@example.COM") == ada
    assert postscript.subscriber(id=ada.id) == ada


def test_subscriber_says_when_nobody_or_several_match_and_wants_one_key(
    postscript: Postscript,
) -> None:
    postscript.seed_many([{"email": "twin@example.com"}, {"email": "Twin@example.com"}])
    with pytest.raises(
        LookupError, match=r"no subscriber has phone '\+15555550199' \(the emulator holds 2\)"
    ):
        postscript.subscriber(phone="+15555550199")
    with pytest.raises(LookupError, match=r"2 subscribers have email 'twin@example\.com'.*id="):
        postscript.subscriber(email="twin@example.com")
    with pytest.raises(TypeError, match="exactly one of"):
        postscript.subscriber(phone=ADA, email="twin@example.com")


def test_events_and_requests_come_back_as_dataclasses_in_order(postscript: Postscript) -> None:
    ada = postscript.seed(phone_number=ADA)
    accepted = post_event(
        postscript,
        subscriber_id=ada.id,
        properties={"order": "#1001"},
        occurred_at="2026-01-31 12:00:00.000000",
        external_id="order-1001",
    )
    refused = post_event(postscript, phone="+15555550199")
    assert (accepted.status_code, refused.status_code) == (202, 404)
    (event,) = postscript.events
    assert isinstance(event, Event)
    assert event.event_id == accepted.json()["event_ids"][0]
    assert (event.type, event.subscriber_id, event.external_id) == (
        "Order_Shipped",
        ada.id,
        "order-1001",
    )
    assert event.properties == {"order": "#1001"}
    assert event.occurred_at == "2026-01-31 12:00:00.000000"
    assert event.received_at.tzinfo is not None
    requests = postscript.requests
    assert all(isinstance(entry, ApiRequest) for entry in requests)
    assert [(r.method, r.path, r.status) for r in requests] == [
        ("POST", "/api/v2/events", 202),
        ("POST", "/api/v2/events", 404),
    ]


def test_an_event_naming_no_subscriber_is_among_the_events_with_no_recipient(
    postscript: Postscript,
) -> None:
    ada = postscript.seed(phone_number=ADA)
    post_event(postscript, subscriber_id=ada.id)
    nobody = post_event(postscript, external_id="store-opened")
    assert nobody.status_code == 202
    assert [(e.recipient_id, e.external_id) for e in postscript.events] == [
        (ada.id, None),
        (None, "store-opened"),
    ]


def test_reset_forgets_subscribers_events_and_requests_but_keeps_faults(
    postscript: Postscript,
) -> None:
    ada = postscript.seed(phone_number=ADA)
    post_event(postscript, subscriber_id=ada.id)
    postscript.faults(latency_ms=(1, 2))
    postscript.reset()
    assert (postscript.subscribers, postscript.events, postscript.requests) == ([], [], [])
    assert postscript.fault_settings.latency_ms == (1.0, 2.0)
    assert postscript.seed(phone_number=ADA).ps_id == 1


def test_add_keyword_gives_the_shop_a_keyword_to_opt_in_with_and_a_reset_keeps_it(
    postscript: Postscript,
) -> None:
    welcome = postscript.add_keyword("WELCOME")
    summer = postscript.add_keyword("summer10", id="kw_summer")
    postscript.reset()
    with postscript.client() as client:
        listed = client.get("/api/v2/keywords").json()["keywords"]
        created = client.post(
            "/api/v2/subscribers", json={"phone_number": ADA, "keyword": "welcome"}
        )
    assert isinstance(welcome, Keyword)
    assert (summer.id, summer.keyword, summer.triggered_count) == ("kw_summer", "SUMMER10", 0)
    assert [k["id"] for k in listed][-2:] == [welcome.id, "kw_summer"]
    assert created.json()["data"] == {"keyword_id": welcome.id}
    with pytest.raises(EmulatorAdminError, match="WELCOME is already a keyword") as refused:
        postscript.add_keyword("Welcome")
    assert refused.value.status == 400


def test_faults_answer_errors_from_a_seeded_sequence_and_no_arguments_clear_them(
    postscript: Postscript,
) -> None:
    setting = postscript.faults(error_rate=1.0, error_statuses=[503], seed=7)
    assert setting == Faults(error_rate=1.0, error_statuses=(503,), seed=7, rate_limit_rps=0.0)
    with postscript.client() as client:
        assert client.get("/api/v2/me").status_code == 503
        assert postscript.faults() == Faults(rate_limit_rps=0.0)
        assert client.get("/api/v2/me").status_code == 200
    assert [r.fault for r in postscript.requests] == ["error", None]


def test_rate_limit_answers_429_past_the_limit_and_keeps_the_faults(
    postscript: Postscript,
) -> None:
    postscript.faults(latency_ms=(0, 1))
    assert postscript.rate_limit(2).latency_ms == (0.0, 1.0)
    with postscript.client() as client:
        statuses = [client.get("/api/v2/me").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert postscript.fault_settings.rate_limit_rps == 2.0


def test_faults_can_set_the_rate_limit_in_the_same_call_and_otherwise_keep_it(
    postscript: Postscript,
) -> None:
    assert postscript.faults(seed=3, rate_limit=4) == Faults(seed=3, rate_limit_rps=4.0)
    assert postscript.faults(error_rate=0.5) == Faults(error_rate=0.5, rate_limit_rps=4.0)


def test_a_bad_fault_setting_is_refused_with_the_emulators_reason(postscript: Postscript) -> None:
    with pytest.raises(EmulatorAdminError, match="error_rate: must be a probability") as refused:
        postscript.faults(error_rate=2.0)
    assert refused.value.status == 400


def test_clients_send_the_key_and_async_clients_work_too(postscript: Postscript) -> None:
    async def me() -> int:
        async with postscript.async_client() as client:
            return (await client.get("/api/v2/me")).status_code

    assert asyncio.run(me()) == 200
    with postscript.client(headers={"Authorization": "Bearer sk_wrong"}) as client:
        assert client.get("/api/v2/me").status_code == 401


def test_a_sync_client_of_an_in_process_emulator_works_inside_a_running_event_loop() -> None:
    async def inside_a_loop(postscript: Postscript) -> int:
        with postscript.client() as client:  # blocking, as sync code called from async code is
            return client.get("/api/v2/me").status_code

    with Postscript.in_process() as postscript:
        assert asyncio.run(inside_a_loop(postscript)) == 200


def test_admin_calls_to_a_served_emulator_pass_through_an_active_respx_mock() -> None:
    with serve_postscript() as postscript, respx.mock(assert_all_mocked=True):
        assert postscript.seed(phone_number=ADA).phone_number == ADA
        assert len(postscript.subscribers) == 1


def test_the_handle_drives_a_pslab_emulator_started_from_the_command_line() -> None:
    with running_emulator("--rate-limit", "0", "--secret-key", "sk_cli") as url:
        postscript = Postscript.connect(url, "sk_cli")
        ada = postscript.seed(phone_number=ADA)
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer sk_cli"}) as client:
            found = client.get("/api/v2/subscribers", params={"phone_number__eq": ADA})
        assert found.json()["subscribers"][0]["id"] == ada.id
        assert [r.path for r in postscript.requests] == ["/api/v2/subscribers"]
        postscript.close()


def test_an_unreachable_emulator_is_named_with_what_to_do() -> None:
    postscript = Postscript.connect("http://127.0.0.1:9")  # the discard port: nobody listens
    with pytest.raises(EmulatorAdminError, match=r"cannot reach .*127\.0\.0\.1:9.*pslab emulator"):
        postscript.reset()
