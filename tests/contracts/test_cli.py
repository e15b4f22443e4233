"""`pslab contracts`: list, verify (in-process and live stand-in), live modes without a key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from postscript_audience_lab.contracts.cli import EXIT_MISSING_LIVE_SETTINGS, app
from postscript_audience_lab.contracts.contract import RECORDED, load_contracts
from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background

STANDIN_KEY = "sk_live_standin_cli"
TEST_PHONE = "+14155552671"
NO_LIVE_ENV = {"POSTSCRIPT_SECRET_KEY": "", "POSTSCRIPT_TEST_PHONE": ""}


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    """An emulator standing in for a live shop, with a test subscriber."""
    with serve_in_background(EmulatorConfig(secret_key=STANDIN_KEY)) as base_url:
        seed = {"phone_number": TEST_PHONE, "email": "test.person@gmail.test"}
        seeded = httpx.post(f"{base_url}/_emulator/subscribers", json={"subscribers": [seed]})
        seeded.raise_for_status()
        yield base_url


def test_list_names_every_contract_with_its_provenance() -> None:
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0
    contracts = load_contracts()
    assert contracts
    for contract in contracts:
        line = next(
            line for line in result.output.splitlines() if line.startswith(f"{contract.name} ")
        )
        assert contract.provenance["source"] in line


def test_list_says_which_answers_are_documented_and_which_the_emulator_chose() -> None:
    lines = {
        line.split()[0]: line for line in CliRunner().invoke(app, ["list"]).output.splitlines()
    }
    assert " documented " in lines["keywords.get.not_found"]
    assert " choice not-found-3001 " in lines["subscribers.get.not_found"]
    assert " choice auth-keys " in lines["me.public_key"]


def test_verify_json_reports_every_contract_against_the_in_process_emulator() -> None:
    result = CliRunner().invoke(app, ["verify", "--json"])
    report = json.loads(result.output)
    assert report["contracts"]
    assert {c["name"]: c["outcome"] for c in report["contracts"]} == {
        c.name: "ok" for c in load_contracts()
    }
    assert result.exit_code == 0


def test_verify_exits_1_naming_a_contract_the_emulator_no_longer_meets(tmp_path: Path) -> None:
    for source in RECORDED.glob("*.json"):
        shutil.copy(source, tmp_path)
    changed = tmp_path / "subscribers.get.json"
    contract = json.loads(changed.read_text())
    contract["response"]["status"] = 201
    changed.write_text(json.dumps(contract))

    result = CliRunner().invoke(app, ["verify", "--folder", str(tmp_path)])

    assert result.exit_code == 1
    assert "FAIL subscribers.get" in result.output
    assert "subscribers.get: status: wrong status (expected 201, got 200)" in result.output
    assert result.output.splitlines()[-1].endswith("1 differ, 0 skipped")


@pytest.mark.parametrize(
    "command",
    [["verify", "--live"], ["record"], ["drift"]],
    ids=["verify-live", "record", "drift"],
)
def test_live_modes_without_a_key_exit_3_naming_the_variables(command: list[str]) -> None:
    result = CliRunner().invoke(app, command, env=NO_LIVE_ENV)
    assert result.exit_code == EXIT_MISSING_LIVE_SETTINGS
    assert "POSTSCRIPT_SECRET_KEY and POSTSCRIPT_TEST_PHONE" in result.output


def test_live_mode_with_a_phone_no_subscriber_has_says_so(standin: str) -> None:
    env = {"POSTSCRIPT_SECRET_KEY": STANDIN_KEY, "POSTSCRIPT_TEST_PHONE": "+14155550000"}
    result = CliRunner().invoke(app, ["verify", "--live", "--base-url", standin], env=env)
    assert result.exit_code == EXIT_MISSING_LIVE_SETTINGS
    assert "no subscriber has POSTSCRIPT_TEST_PHONE" in result.output


def test_verify_live_skips_what_a_live_shop_cannot_set_up_and_checks_the_rest(standin: str) -> None:
    env = {"POSTSCRIPT_SECRET_KEY": STANDIN_KEY, "POSTSCRIPT_TEST_PHONE": TEST_PHONE}
    result = CliRunner().invoke(app, ["verify", "--live", "--base-url", standin, "--json"], env=env)
    assert result.exit_code == 0, result.output
    outcomes = {c["name"]: c["outcome"] for c in json.loads(result.output)["contracts"]}
    assert outcomes["subscribers.list.page1"] == "skipped"
    assert outcomes["subscribers.get.server_error"] == "skipped"
    for name in ("subscribers.get", "subscribers.patch", "events.create", "me.rate_limited"):
        assert outcomes[name] == "ok", name


def test_drift_between_the_emulator_and_an_identical_stand_in_finds_no_disagreement(
    standin: str,
) -> None:
    env = {"POSTSCRIPT_SECRET_KEY": STANDIN_KEY, "POSTSCRIPT_TEST_PHONE": TEST_PHONE}
    result = CliRunner().invoke(app, ["drift", "--base-url", standin, "--json"], env=env)
    entries = {e["name"]: e for e in json.loads(result.output)["contracts"]}
    assert result.exit_code == 0, result.output
    assert entries["subscribers.list.page2"]["outcome"] == "not compared"
    assert entries["subscribers.get"]["outcome"] == "agree"


def test_verify_live_with_allow_flow_events_posts_the_real_event_type(standin: str) -> None:
    env = {"POSTSCRIPT_SECRET_KEY": STANDIN_KEY, "POSTSCRIPT_TEST_PHONE": TEST_PHONE}
    args = ["verify", "--live", "--base-url", standin, "--allow-flow-events"]
    before = len(httpx.get(f"{standin}/_emulator/state").json()["events"])
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    # only what this run posted: the stand-in is shared by the module's tests
    events = httpx.get(f"{standin}/_emulator/state").json()["events"][before:]
    assert "Segment_Audience_Entered" in {event["type"] for event in events}


def test_verify_against_an_emulator_at_a_base_url_checks_every_contract_and_restores_faults() -> (
    None
):
    key = "sk_test_elsewhere"
    with serve_in_background(EmulatorConfig(secret_key=key, rate_limit_rps=7)) as base_url:
        before = httpx.get(f"{base_url}/_emulator/faults").json()
        result = CliRunner().invoke(
            app, ["verify", "--base-url", base_url, "--secret-key", key], env=NO_LIVE_ENV
        )
        after = httpx.get(f"{base_url}/_emulator/faults").json()
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"{len(load_contracts())} ok, 0 differ, 0 skipped"
    assert after == before
