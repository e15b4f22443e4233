"""Checking a seed's world after its last run: the request journal counted, memberships
scored against the ground truth, and each repeated event held to a kill that explains it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from postscript_audience_lab.emulator.segment.workload import Workload
from postscript_audience_lab.lab.comparison import count_repeated, index_subscribers
from postscript_audience_lab.lab.reliability.plans import Attempt, SeedResult
from postscript_audience_lab.sync.settings import Settings

__all__ = [
    "AUDIENCES_PROPERTY",
    "ENTERED",
    "EXITED",
    "STARTUP_S",
    "WRITERS",
    "audience_key",
    "count_journal",
    "explain_repeats",
    "score",
    "who",
]

AUDIENCES_PROPERTY = "Segment Audiences"
ENTERED = "Segment_Audience_Entered"
EXITED = "Segment_Audience_Exited"
# A `pslab sync` makes no call sooner than this after it starts: its imports alone take
# longer (0.33-0.36 s from spawn to its first connection on a quiet 2-core machine, with
# bytecode cached). A killed run's last calls can be stored up to this long after the
# next run started.
STARTUP_S = 0.2
# subscribers one `pslab sync` writes at a time: each can have one event in flight at a kill
WRITERS: int = next(f.default for f in fields(Settings) if f.name == "workers")  # type: ignore[assignment]


def count_journal(journal: Sequence[Mapping[str, Any]], result: SeedResult) -> None:
    for entry in journal:
        status = entry.get("status")
        fault = entry.get("fault")
        if fault == "error":
            result.faults[f"error_{status}"] += 1
        elif fault == "timeout":
            result.faults["timeout"] += 1
        elif status == 429:
            result.faults["rate_limited_429"] += 1
        elif status == 401:
            result.faults["wrong_key_401"] += 1
        elif status == 400 and entry.get("method") == "PATCH":
            result.faults["refused_patch_400"] += 1
        elif status is None:
            result.abandoned_calls += 1
        elif status >= 500:
            result.server_errors_outside_faults += 1
    if result.emulator_kills:
        result.faults["emulator_killed"] += result.emulator_kills


def score(
    state: Mapping[str, Any],
    workload: Workload,
    result: SeedResult,
    refused_subscriber: str | None,
    refused_events: set[tuple[str, str]],
) -> None:
    """Memberships against the ground truth, and whether the posted events mirror them."""
    by_phone, by_email = index_subscribers(state)
    folded: dict[tuple[str, str], bool] = {}
    for event in state["events"]:
        key = (str(event.get("subscriber_id")), audience_key(event))
        folded[key] = event.get("type") == ENTERED
    result.repeated_events = count_repeated(state["events"])
    expected = workload.expected
    result.memberships = len(expected)
    for row in expected:
        subscriber = by_phone.get(row["phone_number"] or "") or by_email.get(
            (row["email"] or "").lower()
        )
        if subscriber is None:
            result.wrong_memberships += 1
            continue
        subscriber_id = str(subscriber["id"])
        pair = (subscriber_id, str(row["audience_key"]))
        audiences = (subscriber.get("properties") or {}).get(AUDIENCES_PROPERTY) or []
        present = row["audience_key"] in audiences
        if subscriber_id == refused_subscriber and row["member"] and not present:
            result.refused_memberships += 1  # Postscript refused it; the run said so
            continue
        if present != row["member"]:
            result.wrong_memberships += 1
        if folded.get(pair, False) != row["member"] and pair not in refused_events:
            result.missing_events += 1
            if result.missing_events <= 3:
                wanted = "Entered" if row["member"] else "Exited"
                result.problems.append(
                    f"lost event: {subscriber_id} is {'' if present else 'not '}in "
                    f"{row['audience_key']!r}, but no Segment_Audience_{wanted} was posted for it"
                )


def explain_repeats(
    events: Sequence[Mapping[str, Any]], attempts: Sequence[Attempt], result: SeedResult
) -> None:
    """Hold each repeated event to a kill of the run that posted the copy before it.

    An event repeats (`count_repeated`) when the run that posted the previous copy had
    Postscript take it but could not record that: it was killed (or its emulator was) with
    that event in flight. One kill leaves at most one event in flight per writer, and one
    per (subscriber, audience); anything beyond that, or a repeat whose previous copy came
    from a run nobody killed, is unexplained (and described in `result.problems`).

    A copy is the work of the last run started `STARTUP_S` before Postscript stored it: a
    killed run's call can still be stored a few milliseconds after the next run started,
    and no run reaches Postscript sooner than that after it starts.
    """
    starts = [attempt.started_at + STARTUP_S for attempt in attempts]
    origin = attempts[0].started_at if attempts else 0.0

    def stored_at(event: Mapping[str, Any]) -> float | None:
        try:
            return datetime.fromisoformat(str(event.get("received_at"))).timestamp()
        except ValueError:
            return None

    def run_at(event: Mapping[str, Any]) -> Attempt | None:
        stored = stored_at(event)
        if stored is None or not attempts or stored < attempts[0].started_at:
            return None
        # the first run owns everything from its own start: no run came before it
        return attempts[max(0, bisect.bisect_right(starts, stored) - 1)]

    def describe(event: Mapping[str, Any], before: Attempt | None, why: str) -> str:
        stored = stored_at(event)
        when = "?" if stored is None else f"{stored - origin:.3f} s"
        cause = "no run" if before is None else f"run {before.number}"
        if before is not None and before.killed_at is not None:
            cause += f" (killed at {before.killed_at - origin:.3f} s)"
        return (
            f"repeated {event.get('type')} {event.get('external_id')} for "
            f"{event.get('subscriber_id')} stored at {when}; the copy before it came from "
            f"{cause}: {why}"
        )

    last: dict[tuple[str, str], tuple[bool, Attempt | None]] = {}
    per_run: dict[int, list[tuple[tuple[str, str], Mapping[str, Any]]]] = {}
    for event in events:
        if event.get("type") not in (ENTERED, EXITED):
            continue
        pair = (str(event.get("subscriber_id")), audience_key(event))
        enters = event.get("type") == ENTERED
        previous = last.get(pair)
        if (previous[0] if previous is not None else False) == enters:
            cause = previous[1] if previous is not None else None
            if cause is None:
                result.unexplained_repeats += 1
                result.problems.append(describe(event, None, "no copy before it"))
            else:
                per_run.setdefault(cause.number, []).append((pair, event))
        last[pair] = (enters, run_at(event))
    by_number = {attempt.number: attempt for attempt in attempts}
    for number, repeats in per_run.items():
        attempt = by_number[number]
        kills = int(attempt.killed) + attempt.emulator_kills
        per_pair: Counter[tuple[str, str]] = Counter()
        explained = 0
        for pair, event in repeats:
            per_pair[pair] += 1
            if per_pair[pair] > kills:
                why = "that run was not killed" if kills == 0 else "more than once per kill"
            elif explained >= kills * WRITERS:
                why = f"more than {WRITERS} (writers) per kill"
            else:
                explained += 1
                continue
            result.unexplained_repeats += 1
            result.problems.append(describe(event, attempt, why))
        result.kills_repeating_several += int(len(repeats) > max(1, kills))


def who(item: Mapping[str, Any]) -> str:
    """A subscriber or expected row by phone, else lower-cased email."""
    return str(item.get("phone_number") or str(item.get("email") or "").lower())


def audience_key(event: Mapping[str, Any]) -> str:
    properties = event.get("properties") or {}
    return str(properties.get("Segment Audience Key"))
