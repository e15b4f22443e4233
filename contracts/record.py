"""record: run the contracts against a live shop and rewrite the files, scrubbed.

What reaches a file is the live answer in fixture terms: the test subscriber's
phone and email are mapped back to the contract's fixtures by the target, any
other phone or email is replaced by a fixed stand-in, and the key never
appears (no header is ever written). Values a matcher compares only by type
(ids, timestamps, the shop's name) keep their previous recorded value when the
live one has the right type, so a re-record changes a file only where the API
really changed. Before writing, each file is checked for the key and the real
phone/email digits, and refused if any is there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from postscript_audience_lab.contracts.contract import Contract, Response, save_contract
from postscript_audience_lab.contracts.matching import child, compare, matcher_for, project
from postscript_audience_lab.contracts.target import LiveTarget, SkipContract

__all__ = ["RecordResult", "UnsafeRecording", "assert_clean", "keep_stable", "record", "scrub"]

SCRUBBED_EMAIL = "scrubbed@example.com"
SCRUBBED_PHONE = "+15555550199"
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+\d{8,15}")


class UnsafeRecording(Exception):
    """A recording still holds a secret or personal data; nothing was written."""


@dataclass
class RecordResult:
    name: str
    outcome: str  # "recorded" or "kept" (skipped live; the file is left as it was)
    reason: str = ""
    path: Path | None = None

    def line(self) -> str:
        if self.outcome == "kept":
            return f"kept     {self.name}: {self.reason}"
        return f"recorded {self.name} -> {self.path}"


def scrub(value: Any, fixtures: set[str]) -> Any:
    """Replace every email and E.164 phone that is not a known fixture by a stand-in."""
    if isinstance(value, str):
        value = _EMAIL.sub(
            lambda m: m.group(0) if m.group(0) in fixtures else SCRUBBED_EMAIL, value
        )
        return _PHONE.sub(lambda m: m.group(0) if m.group(0) in fixtures else SCRUBBED_PHONE, value)
    if isinstance(value, list):
        return [scrub(item, fixtures) for item in value]
    if isinstance(value, dict):
        return {scrub(key, fixtures): scrub(item, fixtures) for key, item in value.items()}
    return value


def keep_stable(
    old: Any,
    new: Any,
    matchers: Mapping[str, dict[str, Any]],
    refs: Mapping[str, str],
    path: str = "$",
) -> Any:
    """`new`, except where a matcher accepts it: there the previously recorded value stays."""
    rule = matcher_for(matchers, path) or {}
    if "ref" in rule:
        recorded = refs.get(rule["ref"], old)
        return recorded if isinstance(new, type(recorded)) else new
    if ("type" in rule or "regex" in rule) and not ({"subset", "each_like"} & rule.keys()):
        return old if not compare(old, new, {path: rule}, path=path) and old is not None else new
    if isinstance(new, dict):
        before = old if isinstance(old, dict) else {}
        return {
            key: keep_stable(before.get(key), value, matchers, refs, child(path, key))
            for key, value in new.items()
        }
    if isinstance(new, list):
        earlier: list[Any] = old if isinstance(old, list) else []
        if "each_like" in rule:  # the first item stands for all of them
            first = earlier[0] if earlier else None
            return [keep_stable(first, new[0], matchers, refs, child(path, 0))] if new else []
        return [
            keep_stable(
                earlier[i] if i < len(earlier) else None, item, matchers, refs, child(path, i)
            )
            for i, item in enumerate(new)
        ]
    return new


def fixtures_of(contract: Contract) -> set[str]:
    values: set[str] = set()
    for person in contract.given.get("subscribers", []):
        values.update(str(person[k]) for k in ("phone_number", "email") if person.get(k))
    for many in contract.request.query.values():
        values.update(many)
    return values


def recorded_contract(
    contract: Contract, status: int, body: Any, notes: list[str], today: date
) -> Contract:
    body = scrub(project(contract.response.body, body, contract.matchers), fixtures_of(contract))
    body = keep_stable(contract.response.body, body, contract.matchers, contract.refs)
    provenance = {"source": "live", "recorded_at": today.isoformat()}
    if notes:
        provenance["note"] = "; ".join(notes)
    return replace(contract, provenance=provenance, response=Response(status, body))


def assert_clean(text: str, secrets: Sequence[str], where: str) -> None:
    """Refuse text holding a secret, or the national digits of a real phone in any format."""
    compact = re.sub(r"[\s().-]", "", text)
    for secret in secrets:
        digits = re.sub(r"\D", "", secret)[-10:]
        if (secret and secret.lower() in text.lower()) or (
            "@" not in secret and len(digits) >= 7 and digits in compact
        ):
            raise UnsafeRecording(
                f"{where} would hold a secret or personal value; nothing was written"
            )


async def record(
    contracts: Sequence[Contract], target: LiveTarget, folder: Path, today: date | None = None
) -> list[RecordResult]:
    """Record every contract the live target can run into `folder`; others are copied unchanged."""
    today = today or date.today()
    await target.start()
    assert target.subscriber is not None
    secrets = [target.secret_key, target.test_phone, target.subscriber.phone_number]
    if target.subscriber.email:
        secrets.append(target.subscriber.email)
    results: list[RecordResult] = []
    try:
        for contract in contracts:
            try:
                exchange = await target.exchange(contract)
            except SkipContract as skip:
                path = save_contract(contract, folder)
                results.append(RecordResult(contract.name, "kept", str(skip), path))
                continue
            fresh = recorded_contract(
                contract, exchange.status, exchange.body, exchange.notes, today
            )
            assert_clean(_json_text(fresh), secrets, f"contract {contract.name}")
            path = save_contract(fresh, folder)
            results.append(RecordResult(contract.name, "recorded", path=path))
    finally:
        await target.finish()
    return results


def _json_text(contract: Contract) -> str:
    return json.dumps(contract.to_json(), ensure_ascii=False)
