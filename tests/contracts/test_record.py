"""record against an emulator standing in for a live shop: files scrubbed, only the test
subscriber touched, no flow-starting event posted."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from postscript_audience_lab.contracts.cli import app
from postscript_audience_lab.contracts.contract import load_contracts
from postscript_audience_lab.contracts.record import (
    UnsafeRecording,
    assert_clean,
    keep_stable,
    scrub,
)
from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background

STANDIN_KEY = "sk_live_standin_7c1e9a44d2"
REAL_PHONE = "+14155552671"
REAL_EMAIL = "jane.realperson@gmail.test"
BYSTANDER = {"phone_number": "+14155550188", "email": "bob.bystander@gmail.test"}


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Record once into a temp folder; keep what the stand-in saw."""
    out = tmp_path_factory.mktemp("recorded")
    config = EmulatorConfig(secret_key=STANDIN_KEY)  # the default 15 rps limit, like a shop
    with serve_in_background(config) as base_url, httpx.Client(base_url=base_url) as admin:
        seed = admin.post(
            "/_emulator/subscribers",
            json={
                "subscribers": [
                    {"phone_number": REAL_PHONE, "email": REAL_EMAIL, "properties": {"vip": "yes"}},
                    BYSTANDER,
                ]
            },
        )
        seed.raise_for_status()
        seeded = seed.json()["subscribers"]
        env = {"POSTSCRIPT_SECRET_KEY": STANDIN_KEY, "POSTSCRIPT_TEST_PHONE": REAL_PHONE}
        result = CliRunner().invoke(
            app, ["record", "--base-url", base_url, "--out", str(out)], env=env
        )
        state = admin.get("/_emulator/state").json()
        journal = admin.get("/_emulator/requests").json()["requests"]
    return {
        "out": out,
        "result": result,
        "test_id": seeded[0]["id"],
        "bystander": seeded[1],
        "state": state,
        "journal": journal,
    }


def test_record_writes_one_file_per_contract(recording: dict[str, Any]) -> None:
    assert recording["result"].exit_code == 0, recording["result"].output
    written = sorted(p.name for p in recording["out"].glob("*.json"))
    assert written == sorted(f"{c.name}.json" for c in load_contracts())


def test_recorded_files_hold_no_key_no_real_phone_and_no_real_email(
    recording: dict[str, Any],
) -> None:
    paths = sorted(Path(recording["out"]).glob("*.json"))
    assert paths, "record wrote no file"
    for path in paths:
        text = path.read_text()
        assert STANDIN_KEY not in text, path.name
        assert "4155552671" not in text.replace("-", "").replace(" ", ""), path.name
        assert REAL_EMAIL.lower() not in text.lower(), path.name
        assert '"Authorization"' not in text, path.name  # no header is ever written
        assert '"vip"' not in text, path.name  # the test subscriber's own properties


def test_recorded_contracts_say_live_with_the_date(recording: dict[str, Any]) -> None:
    recorded = {c.name: c for c in load_contracts(recording["out"])}
    assert recorded["subscribers.get"].provenance == {
        "source": "live",
        "recorded_at": date.today().isoformat(),
    }
    assert recorded["subscribers.get"].response.body["phone_number"] == "+15555550100"
    assert recorded["subscribers.get"].response.body["email"] == "alice@example.com"
    assert recorded["subscribers.list.page1"].provenance["source"] == "docs"  # cannot run live


def test_record_touches_only_the_test_subscriber(recording: dict[str, Any]) -> None:
    assert recording["result"].exit_code == 0, recording["result"].output
    subscribers = {s["id"]: s for s in recording["state"]["subscribers"]}
    bystander = recording["bystander"]
    touched = [e for e in recording["journal"] if e["path"].endswith(recording["test_id"])]
    assert touched, "record never called the API about the test subscriber"
    assert subscribers[bystander["id"]]["properties"] == bystander["properties"]
    assert subscribers[bystander["id"]]["updated_at"] == bystander["updated_at"]
    for entry in recording["journal"]:
        if entry["path"].startswith("/api/v2/subscribers/"):
            assert entry["path"].endswith(recording["test_id"]) or entry["status"] == 404
        # the journal keeps the query as sent, percent-encoded ("+" is "%2B", "@" is "%40")
        sent = unquote(json.dumps(entry))
        assert bystander["phone_number"].lstrip("+") not in sent
        assert bystander["email"] not in sent


def test_record_posts_only_events_of_a_type_that_starts_no_flow(
    recording: dict[str, Any],
) -> None:
    types = {event["type"] for event in recording["state"]["events"]}
    assert types == {"pslab_contract_probe"}
    recorded = {c.name: c for c in load_contracts(recording["out"])}
    assert "pslab_contract_probe" in recorded["events.create"].provenance["note"]
    assert recorded["events.create"].request.json["type"] == "Segment_Audience_Entered"


PERSONAL = st.one_of(
    st.from_regex(r"\A[a-z]{1,8}\.[a-z]{1,8}@[a-z]{2,8}\.(com|org|test)\Z"),
    st.from_regex(r"\A\+1[2-9]\d{9}\Z"),
)
TEXT_AROUND = st.text(alphabet=" :,;()", max_size=3)


@given(
    personal=st.lists(PERSONAL, min_size=1, max_size=4),
    prefix=TEXT_AROUND,
    suffix=TEXT_AROUND,
)
def test_scrub_leaves_no_email_or_phone_that_is_not_a_fixture(
    personal: list[str], prefix: str, suffix: str
) -> None:
    answer = {
        "email": personal[0],
        "properties": {personal[-1]: [f"{prefix}{p}{suffix}" for p in personal]},
        "fixture": "alice@example.com",
    }
    text = json.dumps(scrub(answer, {"alice@example.com"}))
    assert not any(p in text for p in personal)
    assert "alice@example.com" in text


def test_keep_stable_keeps_recorded_ids_and_timestamps_but_takes_new_fields_and_values() -> None:
    recorded = {"id": "s_recorded", "created_at": "2026-01-01T00:00:00Z", "tier": "gold"}
    live = {"id": "s_live", "created_at": "2031-02-03T04:05:06Z", "tier": "silver", "new": 1}
    matchers = {"$.id": {"ref": "subscriber.alice.id"}, "$.created_at": {"type": "datetime"}}
    refs = {"subscriber.alice.id": "s_recorded"}
    assert keep_stable(recorded, live, matchers, refs) == {
        "id": "s_recorded",
        "created_at": "2026-01-01T00:00:00Z",
        "tier": "silver",
        "new": 1,
    }


def test_keep_stable_takes_the_live_value_when_its_type_changed() -> None:
    matchers = {"$.ps_id": {"type": "integer"}}
    assert keep_stable({"ps_id": 1}, {"ps_id": "one"}, matchers, {}) == {"ps_id": "one"}


def test_a_recording_holding_a_secret_is_refused() -> None:
    with pytest.raises(UnsafeRecording):
        assert_clean('{"note": "(415) 555-2671"}', [REAL_PHONE], "contract me")
    with pytest.raises(UnsafeRecording):
        assert_clean('{"k": "SK_LIVE_STANDIN_7C1E9A44D2"}', [STANDIN_KEY], "contract me")
    assert_clean('{"phone": "+15555550100"}', [REAL_PHONE, STANDIN_KEY], "contract me")
