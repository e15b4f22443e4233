"""Contract files: loading, saving, references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postscript_audience_lab.contracts.contract import (
    RECORDED,
    Contract,
    ContractFileError,
    fill,
    load_contracts,
    references_in,
    save_contract,
)
from postscript_audience_lab.emulator.postscript.fidelity import CHOICES


def _contracts() -> list[Contract]:
    contracts = load_contracts()
    assert contracts, f"no contract in {RECORDED}"
    return contracts


def test_saving_a_contract_reproduces_its_file_byte_for_byte(tmp_path: Path) -> None:
    for contract in _contracts():
        written = save_contract(contract, tmp_path)
        assert written.read_text() == (RECORDED / written.name).read_text(), written.name


def test_every_contract_names_its_provenance() -> None:
    for contract in _contracts():
        source = contract.provenance["source"]
        assert source in ("docs", "live"), contract.name
        if source == "docs":
            assert contract.provenance["page"].startswith("https://developers.postscript.io/")
        else:
            assert contract.provenance["recorded_at"]


def test_every_contract_says_whether_its_answer_is_documented_or_a_choice() -> None:
    for contract in _contracts():
        assert contract.documented or contract.behaviour in CHOICES, contract.name


def test_every_reference_a_request_uses_has_a_recorded_value() -> None:
    for contract in _contracts():
        request = contract.request
        used = references_in([request.path, request.query, request.json])
        assert used <= contract.refs.keys(), contract.name


def test_fill_replaces_references_in_strings_lists_and_objects() -> None:
    template = {"path": "/s/{{subscriber.alice.id}}", "ids": ["{{ subscriber.alice.id }}"], "n": 1}
    values = {"subscriber.alice.id": "s_1"}
    assert fill(template, values) == {"path": "/s/s_1", "ids": ["s_1"], "n": 1}


def test_fill_names_a_reference_without_a_value() -> None:
    with pytest.raises(KeyError, match=r"subscriber\.bob\.id"):
        fill("/s/{{subscriber.bob.id}}", {})


def test_two_contracts_with_one_name_are_refused(tmp_path: Path) -> None:
    doc = json.loads((RECORDED / "me.json").read_text())
    for file_name in ("a.json", "b.json"):
        (tmp_path / file_name).write_text(json.dumps(doc))
    with pytest.raises(ContractFileError, match="unique"):
        load_contracts(tmp_path)


def test_a_file_without_a_request_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text(json.dumps({"name": "broken", "provenance": {}}))
    with pytest.raises(ContractFileError, match=r"broken\.json"):
        load_contracts(tmp_path)
