"""Reading generated traffic back through the engine's parser (docs/design/events.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from postscript_audience_lab.sync.parse import AudienceChange, Rejection, parse_line


def parse_all(lines: Iterable[str]) -> list[AudienceChange]:
    """Every change in `lines`; fails the test on the first rejection."""
    changes: list[AudienceChange] = []
    for number, line in enumerate(lines, start=1):
        for result in parse_line(line, number):
            assert not isinstance(result, Rejection), f"{result.reason}: {result.event}"
            changes.append(result)
    return changes


class SubscriberIndex:
    """Finds a seeded subscriber by phone, then by email (docs/design/convergence.md#identity) and
    names it by identity."""

    def __init__(self, subscribers: Iterable[Mapping[str, Any]]) -> None:
        self.by_phone: dict[str, str] = {}
        self.by_email: dict[str, str] = {}
        for item in subscribers:
            phone: str | None = item.get("phone_number")
            email: str | None = item.get("email")
            identity = phone or email
            assert identity is not None
            if phone:
                self.by_phone[phone] = identity
            if email:
                self.by_email[email.lower()] = identity

    def identity(self, change: AudienceChange) -> str:
        if change.phone and change.phone in self.by_phone:
            return self.by_phone[change.phone]
        if change.email and change.email in self.by_email:
            return self.by_email[change.email]
        raise AssertionError(f"no seeded subscriber for {change}")


def fold_by_version(
    changes: Iterable[AudienceChange], subscribers: SubscriberIndex
) -> dict[tuple[str, str], bool]:
    """docs/design/convergence.md#state by brute force: sort by version, apply in order, keep the
    last word."""
    state: dict[tuple[str, str], bool] = {}
    for change in sorted(changes, key=lambda c: c.version):
        state[(subscribers.identity(change), change.audience_key)] = change.member
    return state


def serialise_run(run: Iterable[Mapping[str, Any]]) -> list[str]:
    return [json.dumps(event) for event in run]
