"""drift: one report of where the emulator and a live shop answer differently.

Each contract runs against both; the live answer is taken as the truth and the
emulator's answer is compared with it under the contract's matchers (a
reference is only asked to have the same type on both sides, since each side
has its own ids). The report also says how each side fared against the
contract file itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from postscript_audience_lab.contracts.contract import Contract
from postscript_audience_lab.contracts.matching import Difference, compare, project
from postscript_audience_lab.contracts.verify import ContractResult

__all__ = ["DriftEntry", "drift"]


@dataclass
class DriftEntry:
    name: str
    outcome: str  # "agree", "disagree", "not compared"
    differences: list[Difference] = field(default_factory=list)
    reason: str = ""
    emulator: str = ""
    live: str = ""

    def lines(self) -> list[str]:
        sides = f"(emulator vs contract: {self.emulator}; live vs contract: {self.live})"
        if self.outcome == "not compared":
            return [f"--   {self.name}: not compared, {self.reason}"]
        if self.outcome == "agree":
            return [f"same {self.name} {sides}"]
        return [f"DIFF {self.name} {sides}"] + [
            f"     {self.name}: emulator {d}".replace("(expected", "(live")
            for d in self.differences
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "reason": self.reason,
            "emulator_vs_contract": self.emulator,
            "live_vs_contract": self.live,
            "differences": [
                {"path": d.path, "kind": d.kind, "live": d.expected, "emulator": d.actual}
                for d in self.differences
            ],
        }


def _loosen(matchers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Matchers for comparing two answers: what a contract pins by type (or by reference)
    must only have the same type on both sides."""
    loose: dict[str, dict[str, Any]] = {}
    for path, rule in matchers.items():
        if "each_like" in rule:
            loose[path] = {"each_like": rule["each_like"]}
        elif rule.get("subset"):
            continue  # `project` already kept only the recorded keys
        elif "type" in rule or "ref" in rule:
            loose[path] = {"same_type": True}
        else:
            loose[path] = rule
    return loose


def drift(
    contracts: Sequence[Contract],
    emulator: Sequence[ContractResult],
    live: Sequence[ContractResult],
) -> list[DriftEntry]:
    """Compare the emulator's and the live shop's answers, contract by contract."""
    by_name_emulator = {r.name: r for r in emulator}
    by_name_live = {r.name: r for r in live}
    entries: list[DriftEntry] = []
    for contract in contracts:
        mine, theirs = by_name_emulator[contract.name], by_name_live[contract.name]
        if theirs.exchange is None or mine.exchange is None:
            reason = theirs.reason or mine.reason or "no answer"
            entries.append(DriftEntry(contract.name, "not compared", reason=reason))
            continue
        differences: list[Difference] = []
        if mine.exchange.status != theirs.exchange.status:
            differences.append(
                Difference("status", "wrong status", theirs.exchange.status, mine.exchange.status)
            )
        expected = contract.response.body
        differences += compare(
            project(expected, theirs.exchange.body, contract.matchers),
            project(expected, mine.exchange.body, contract.matchers),
            _loosen(contract.matchers),
        )
        entries.append(
            DriftEntry(
                contract.name,
                "disagree" if differences else "agree",
                differences,
                emulator=mine.outcome,
                live=theirs.outcome,
            )
        )
    return entries
