"""Property: any sequence of API writes leaves the emulator agreeing with a plain model of it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from starlette.testclient import TestClient

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET

pytestmark = pytest.mark.no_cover  # whole runs repeat lines other tests cover (noxfile: tests)

PHONES = [f"+1555555{n:04d}" for n in range(6)]
EMAILS = ["ada@example.com", "Bob@Example.com", "cy@shop.org"]
KEYS = st.sampled_from([f"k{n}" for n in range(60)])


class EmulatorModel(RuleBasedStateMachine):
    """The model: per subscriber id, its properties, tags, email and can_send."""

    subscribers = Bundle("subscribers")

    def __init__(self) -> None:
        super().__init__()
        # entered once: one event-loop thread for the whole run, not one per request
        self.client = TestClient(create_app(EmulatorConfig(rate_limit_rps=0))).__enter__()
        self.client.headers["Authorization"] = f"Bearer {SECRET}"
        self.model: dict[str, dict[str, Any]] = {}
        self.events = 0

    @rule(
        target=subscribers, phone=st.sampled_from(PHONES), email=st.none() | st.sampled_from(EMAILS)
    )
    def create(self, phone: str, email: str | None) -> str:
        taken = any(s["phone_number"] == phone for s in self.model.values())
        body: dict[str, Any] = {"phone_number": phone} | ({"email": email} if email else {})
        response = self.client.post("/api/v2/subscribers", json=body)
        if taken:
            assert response.status_code == 400
            return next(i for i, s in self.model.items() if s["phone_number"] == phone)
        assert response.status_code == 201
        pending_id = response.json()["id"]
        assert self.client.get(f"/api/v2/subscribers/{pending_id}").status_code == 404
        # the person answers the confirmation text: the subscriber exists from now on
        confirmed = self.client.post(
            "/_emulator/inbound", json={"phone_number": phone, "body": "y"}
        )
        assert confirmed.json()["outcome"] == "confirmed"
        active_id = str(confirmed.json()["subscriber"]["id"])
        assert active_id != pending_id
        self.model[active_id] = {
            "phone_number": phone,
            "email": email,
            "properties": {},
            "tags": [],
            "can_send": True,
        }
        return active_id

    @rule(
        subscriber=subscribers,
        properties=st.dictionaries(KEYS, st.integers() | st.text(max_size=3), max_size=8),
        tags=st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
        email=st.none() | st.sampled_from(EMAILS),
    )
    def patch(
        self, subscriber: str, properties: dict[str, Any], tags: list[str], email: str | None
    ) -> None:
        body: dict[str, Any] = {"properties": properties, "tags": tags}
        if email:
            body["email"] = email
        response = self.client.patch(f"/api/v2/subscribers/{subscriber}", json=body)
        expected = self.model[subscriber]
        merged = {**expected["properties"], **properties}
        if len(merged) > 50:
            assert response.status_code == 400
            return
        assert response.status_code == 200
        expected["properties"] = merged
        expected["tags"] = list(dict.fromkeys([*expected["tags"], *tags]))
        # documented: set when none is held or no Shopify customer is linked (none is, here)
        expected["email"] = email or expected["email"]

    @rule(subscriber=subscribers)
    def post_event(self, subscriber: str) -> None:
        body = {"type": "Segment_Audience_Entered", "subscriber_id": subscriber}
        assert self.client.post("/api/v2/events", json=body).status_code == 202
        self.events += 1

    @rule(subscriber=subscribers)
    def unsubscribe(self, subscriber: str) -> None:
        phone = self.model[subscriber]["phone_number"]
        response = self.client.patch("/api/v2/compliance/unsubscribe", json={"phone_number": phone})
        assert response.status_code == 202
        self.model[subscriber]["can_send"] = False

    @rule(subscriber=subscribers)
    def text_stop(self, subscriber: str) -> None:
        phone = self.model[subscriber]["phone_number"]
        response = self.client.post(
            "/_emulator/inbound", json={"phone_number": phone, "body": "Stop"}
        )
        assert response.json()["outcome"] == "opted_out"
        self.model[subscriber]["can_send"] = False

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)

    @invariant()
    def every_subscriber_reads_back_as_modelled(self) -> None:
        for subscriber_id, expected in self.model.items():
            got = self.client.get(f"/api/v2/subscribers/{subscriber_id}").json()
            assert got["properties"] == expected["properties"]
            assert got["tags"] == expected["tags"]
            assert got["email"] == expected["email"]
            assert got["subscriptions"]["promotional"]["can_send"] is expected["can_send"]

    @invariant()
    def lookups_by_phone_and_email_find_exactly_the_modelled_subscribers(self) -> None:
        for phone in PHONES:
            found = self.client.get("/api/v2/subscribers", params={"phone_number__eq": phone})
            ids = [s["id"] for s in found.json()["subscribers"]]
            assert ids == [i for i, s in self.model.items() if s["phone_number"] == phone]
        for email in EMAILS:
            found = self.client.get("/api/v2/subscribers", params={"email__eq": email.upper()})
            ids = sorted(s["id"] for s in found.json()["subscribers"])
            expected = [
                i for i, s in self.model.items() if (s["email"] or "").lower() == email.lower()
            ]
            assert ids == sorted(expected)

    @invariant()
    def state_holds_every_subscriber_and_event(self) -> None:
        state = self.client.get("/_emulator/state").json()
        assert sorted(s["id"] for s in state["subscribers"]) == sorted(self.model)
        assert len(state["events"]) == self.events


EmulatorModel.TestCase.settings = settings(max_examples=25, stateful_step_count=10, deadline=None)
test_api_writes_agree_with_a_plain_model = EmulatorModel.TestCase
