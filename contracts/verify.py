"""verify: send each contract's request to a target and report every difference.

`verify_emulator` runs against an emulator app in-process (the default of
`pslab contracts verify`); `verify_target` against any `Target`, which is how a
base URL or a live shop is checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp

from postscript_audience_lab.contracts.contract import Contract
from postscript_audience_lab.contracts.matching import Difference, compare
from postscript_audience_lab.contracts.target import EmulatorTarget, Exchange, SkipContract, Target
from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY
from postscript_audience_lab.emulator.postscript.web.app import create_app

__all__ = ["ContractResult", "summary", "verify_emulator", "verify_target"]

IN_PROCESS_URL = "http://emulator.invalid"


@dataclass
class ContractResult:
    """How one contract fared against one target."""

    name: str
    outcome: str  # "ok", "differs", "skipped"
    differences: list[Difference] = field(default_factory=list)
    reason: str = ""
    exchange: Exchange | None = None

    @property
    def failed(self) -> bool:
        return self.outcome == "differs"

    def lines(self) -> list[str]:
        """The human report: one line, plus one per difference."""
        if self.outcome == "skipped":
            return [f"SKIP {self.name}: {self.reason}"]
        if self.outcome == "ok":
            return [f"ok   {self.name}"]
        return [f"FAIL {self.name}"] + [f"     {self.name}: {d}" for d in self.differences]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "reason": self.reason,
            "differences": [
                {"path": d.path, "kind": d.kind, "expected": d.expected, "actual": d.actual}
                for d in self.differences
            ],
        }


def check(contract: Contract, exchange: Exchange) -> list[Difference]:
    """Every difference between an answer and the contract's recorded response."""
    differences: list[Difference] = []
    if exchange.status != contract.response.status:
        differences.append(
            Difference("status", "wrong status", contract.response.status, exchange.status)
        )
    bindings = dict(exchange.bindings)
    differences += compare(contract.response.body, exchange.body, contract.matchers, bindings)
    return differences


async def run_contract(contract: Contract, target: Target) -> ContractResult:
    try:
        exchange = await target.exchange(contract)
    except SkipContract as skip:
        return ContractResult(contract.name, "skipped", reason=str(skip))
    differences = check(contract, exchange)
    outcome = "differs" if differences else "ok"
    return ContractResult(contract.name, outcome, differences, exchange=exchange)


async def verify_target(contracts: Sequence[Contract], target: Target) -> list[ContractResult]:
    """Run every contract against `target`, one after the other (each resets its state)."""
    await target.start()
    try:
        return [await run_contract(contract, target) for contract in contracts]
    finally:
        await target.finish()


@asynccontextmanager
async def emulator_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to an emulator app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL) as client:
        yield client


async def verify_emulator(
    contracts: Sequence[Contract], app: ASGIApp | None = None, secret_key: str | None = None
) -> list[ContractResult]:
    """Verify against an emulator app in-process (a fresh default one when `app` is None)."""
    app = app if app is not None else create_app()
    async with emulator_client(app) as client:
        target = EmulatorTarget(client, secret_key or DEFAULT_SECRET_KEY)
        return await verify_target(contracts, target)


def summary(results: Sequence[ContractResult]) -> str:
    counts = {
        outcome: sum(r.outcome == outcome for r in results)
        for outcome in ("ok", "differs", "skipped")
    }
    return f"{counts['ok']} ok, {counts['differs']} differ, {counts['skipped']} skipped"
