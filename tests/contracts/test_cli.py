"""`pslab contracts`: list, verify (in-process and live stand-in), live modes without a key."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from contracts.cli import EXIT_MISSING_LIVE_SETTINGS, app
from contracts.contract import load_contracts
from emulator.postscript.config import EmulatorConfig
from emulator.postscript.serve import serve_in_background

STANDIN_KEY = "sk_live_standin_cli"
TEST_PHONE = "+14155552671"
NO_LIVE_ENV = {"POSTSCRIPT_SECRET_KEY": "", "POSTSCRIPT_TEST_PHONE": ""}


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    """An emulator standing in for a live shop, with a test subscriber."""
    with serve_in_background(EmulatorConfig(secret_key=STANDIN_KEY)) as base_url:
        seed = {"phone_number": TEST_PHONE, "email": "test.person@gmail.test"}
        httpx.post(f"{base_url}/_emulator/subscribers", json={"subscribers": [seed]})
        yield base_url


def test_list_names_every_contract_with_its_provenance() -> None:
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0
    for contract in load_contracts():
        line = next(line for line in result.output.splitlines() if line.startswith(contract.name))
        assert contract.provenance["source"] in line


def test_verify_json_reports_every_contract_against_the_in_process_emulator() -> None:
    result = CliRunner().invoke(app, ["verify", "--json"])
    report = json.loads(result.output)
    assert {c["name"] for c in report["contracts"]} == {c.name for c in load_contracts()}
    assert result.exit_code == (
        1 if any(c["outcome"] == "differs" for c in report["contracts"]) else 0
    )


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
