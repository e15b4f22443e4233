"""drift: the emulator's answer against a live shop's, under the contract's matchers."""

from __future__ import annotations

from postscript_audience_lab.contracts.contract import load_contracts, select
from postscript_audience_lab.contracts.drift import drift
from postscript_audience_lab.contracts.target import Exchange
from postscript_audience_lab.contracts.verify import ContractResult


def results(name: str, body: object, status: int = 200) -> list[ContractResult]:
    return [ContractResult(name, "ok", exchange=Exchange(status, body))]


def subscriber(**changes: object) -> dict[str, object]:
    contract = select(load_contracts(), ["subscribers.get"])[0]
    body = dict(contract.response.body)
    body.update(changes)
    return body


def test_answers_that_differ_only_in_ids_timestamps_and_extra_properties_agree() -> None:
    contract = select(load_contracts(), ["subscribers.get"])
    live = subscriber(
        id="s_live", created_at="2020-01-01T00:00:00Z", properties={"loyalty_tier": "gold", "x": 1}
    )
    emulator = subscriber(id="s_emulator")
    [entry] = drift(
        contract, results("subscribers.get", emulator), results("subscribers.get", live)
    )
    assert entry.outcome == "agree"


def test_a_field_the_emulator_lacks_and_a_status_it_gets_wrong_are_reported() -> None:
    contract = select(load_contracts(), ["subscribers.get"])
    live = subscriber(shop_id=7)
    [entry] = drift(
        contract,
        results("subscribers.get", subscriber(), status=201),
        results("subscribers.get", live),
    )
    assert entry.outcome == "disagree"
    assert [(d.path, d.kind) for d in entry.differences] == [
        ("status", "wrong status"),
        ("$.shop_id", "missing field"),
    ]
    assert "     subscribers.get: emulator $.shop_id: missing field (live 7)" in entry.lines()


def test_a_contract_the_live_shop_cannot_run_is_not_compared() -> None:
    contract = select(load_contracts(), ["subscribers.list.page2"])
    skipped = [ContractResult("subscribers.list.page2", "skipped", reason="needs 101 subscribers")]
    [entry] = drift(contract, results("subscribers.list.page2", {}), skipped)
    assert (entry.outcome, entry.reason) == ("not compared", "needs 101 subscribers")
