"""One system (the engine or the baseline) against a fresh emulator world, scored.

`pslab demo` and `pslab bench` both do the same three things per system:
reset the emulator and seed the workload's subscribers (`seed_world`), run the
system over the delivered lines (`run_engine` / `run_baseline`), then read
`/_emulator/state` back and compare it with the workload's ground truth
(`score_world`). What "correct", "repeated" and "lower bound" mean is defined
here, once:

- a membership is correct when the audience key is in the subscriber's
  `Segment Audiences` list exactly when the ground truth says member;
- a posted Postscript event is *repeated* when it mirrors no change: per
  (subscriber, audience), in posting order, starting from "not a member",
  an `Entered` while already entered or an `Exited` while not a member
  (so a correct engine posts none, SPEC §4.3);
- the lower bound is SPEC §5's: ceil(identities / lookup batch) + subscribers
  whose list changes + list entries that change (each posts one event), where
  identities are the distinct subscribers the traffic names, and the changes
  are the net ones from the seeded state (empty lists) to the ground truth.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from emulator.postscript.config import DEFAULT_SECRET_KEY
from emulator.segment import baseline
from emulator.segment.baseline import AUDIENCE_PROPERTY
from emulator.segment.workload import Workload
from sync.engine import Engine, ProgressCallback
from sync.settings import Settings

__all__ = [
    "ENDPOINTS",
    "RATE_LIMIT_RPS",
    "SECRET_KEY",
    "ProgressBars",
    "ProgressCallback",
    "Run",
    "Score",
    "WorkloadFacts",
    "format_duration",
    "format_share",
    "progress_bars",
    "run_baseline",
    "run_engine",
    "score_world",
    "seed_world",
    "system_summary",
]

SECRET_KEY = DEFAULT_SECRET_KEY
ENDPOINTS = ("me", "subscribers.list", "subscribers.get", "subscribers.patch", "events.create")
RATE_LIMIT_RPS = 15.0  # Postscript's limit; "time to converge" is calls / this
LOOKUP_BATCH = 50
ENTERED, EXITED = "Segment_Audience_Entered", "Segment_Audience_Exited"


@dataclass(frozen=True)
class WorkloadFacts:
    """What the ground truth says the job is, independent of any system."""

    lines: int  # NDJSON lines as delivered (duplicates and late copies included)
    changes: int  # distinct membership changes Engage sent (the denominator of calls/change)
    memberships: int  # (subscriber, audience) pairs the traffic mentions
    identities: int  # distinct subscribers the traffic names
    subscribers_changed: int  # subscribers whose list differs from the seeded (empty) one
    entries_changed: int  # list entries to add or remove; each posts one event

    @classmethod
    def of(cls, workload: Workload, lines: int) -> WorkloadFacts:
        truth = workload.truth
        seeded = workload.seeded
        named = {user for (user, _) in truth.final if seeded[user]}
        changed = {user for (user, _), member in truth.final.items() if member and seeded[user]}
        return cls(
            lines=lines,
            changes=truth.events,
            memberships=len(workload.expected),
            identities=len(named),
            subscribers_changed=len(changed),
            entries_changed=workload.expected_event_count,
        )

    def lower_bound(self, lookup_batch: int = LOOKUP_BATCH, *, post_events: bool = True) -> int:
        lookups = math.ceil(self.identities / lookup_batch)
        events = self.entries_changed if post_events else 0
        return lookups + self.subscribers_changed + events


@dataclass
class Run:
    """What one system did with the delivered lines (its own counts, before scoring)."""

    system: str
    received: int = 0
    duplicates_dropped: int = 0
    stale_skipped: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    ingest_s: float = 0.0  # the engine's part of wall_s spent reading events into its ledger
    drained: bool = True  # the engine left nothing pending or parked
    peak_rss_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "received": self.received,
            "duplicates_dropped": self.duplicates_dropped,
            "stale_skipped": self.stale_skipped,
            "api_calls": dict(self.api_calls),
            "wall_s": self.wall_s,
            "ingest_s": self.ingest_s,
            "drained": self.drained,
            "peak_rss_mb": self.peak_rss_mb,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(**{**data, "api_calls": Counter(data["api_calls"])})


@dataclass(frozen=True)
class Score:
    """The emulator's final state compared with the ground truth."""

    memberships_total: int
    memberships_correct: int
    events_posted: int
    repeated_events: int

    @property
    def converged_share(self) -> float:
        if self.memberships_total == 0:
            return 1.0
        return self.memberships_correct / self.memberships_total


def seed_world(base_url: str, workload: Workload) -> None:
    """Forget everything the emulator holds, then seed the workload's subscribers."""
    with httpx.Client(base_url=base_url, timeout=120) as admin:
        admin.post("/_emulator/reset").raise_for_status()
        body = {"subscribers": workload.subscribers}
        admin.post("/_emulator/subscribers", json=body).raise_for_status()


def score_world(base_url: str, workload: Workload) -> Score:
    """Read `/_emulator/state` and score it against the workload's expected memberships."""
    with httpx.Client(base_url=base_url, timeout=300) as admin:
        response = admin.get("/_emulator/state")
        response.raise_for_status()
        state = response.json()
    by_phone: dict[str, Mapping[str, Any]] = {}
    by_email: dict[str, Mapping[str, Any]] = {}
    for subscriber in state["subscribers"]:
        if subscriber.get("phone_number"):
            by_phone[subscriber["phone_number"]] = subscriber
        if subscriber.get("email"):
            by_email[str(subscriber["email"]).lower()] = subscriber
    correct = 0
    expected = workload.expected
    for row in expected:
        subscriber = by_phone.get(row["phone_number"] or "") or by_email.get(
            (row["email"] or "").lower()
        )
        if subscriber is None:
            continue
        audiences = (subscriber.get("properties") or {}).get(AUDIENCE_PROPERTY) or []
        correct += (row["audience_key"] in audiences) == row["member"]
    return Score(
        memberships_total=len(expected),
        memberships_correct=correct,
        events_posted=len(state["events"]),
        repeated_events=count_repeated(state["events"]),
    )


def count_repeated(events: Iterable[Mapping[str, Any]]) -> int:
    """Posted events that mirror no change (see the module docstring), in posting order."""
    entered: dict[tuple[str, str], bool] = {}
    repeated = 0
    for event in events:
        if event.get("type") not in (ENTERED, EXITED):
            continue
        key = (str(event.get("subscriber_id")), str(event["properties"]["Segment Audience Key"]))
        enters = event["type"] == ENTERED
        repeated += entered.get(key, False) == enters
        entered[key] = enters
    return repeated


def run_engine(
    lines: Iterable[str],
    base_url: str,
    state_path: Path,
    *,
    post_events: bool = True,
    progress: ProgressCallback | None = None,
) -> Run:
    """Ingest then drain with pacing off (the emulator's limit is off too)."""
    settings = Settings(
        base_url=base_url,
        secret_key=SECRET_KEY,
        state_path=state_path,
        rate_limit=0,
        post_events=post_events,
        lookup_batch=LOOKUP_BATCH,
    )
    started = time.perf_counter()
    with Engine(settings, progress=progress) as engine:
        engine.ingest(lines)
        ingested = time.perf_counter()
        report = anyio.run(engine.drain)
    return Run(
        system="engine",
        received=report.received,
        duplicates_dropped=report.duplicates,
        stale_skipped=report.stale,
        api_calls=Counter(report.api_calls),
        wall_s=time.perf_counter() - started,
        ingest_s=ingested - started,
        drained=report.drained and report.parked == 0,
    )


def run_baseline(
    lines: Iterable[str], base_url: str, *, on_event: Callable[[], None] | None = None
) -> Run:
    """The Segment destination's per-event algorithm, one event at a time (workers=1)."""
    report = baseline.run_baseline(lines, base_url, SECRET_KEY, on_event=on_event)
    return Run(
        system="baseline",
        received=report.events_seen,
        api_calls=Counter(report.api_calls),
        wall_s=report.wall_s,
    )


def system_summary(run: Run, score: Score, facts: WorkloadFacts) -> dict[str, Any]:
    """One system's figures, as `pslab demo --json` and `pslab bench --json` print them."""
    calls = {endpoint: run.api_calls.get(endpoint, 0) for endpoint in ENDPOINTS}
    calls.update(run.api_calls)
    total = sum(calls.values())
    return {
        "events_received": run.received,
        "duplicates_dropped": run.duplicates_dropped,
        "stale_skipped": run.stale_skipped,
        "api_calls": {"total": total, **calls},
        "calls_per_change": round(total / facts.changes, 4) if facts.changes else 0.0,
        "time_to_converge_at_15rps_s": round(total / RATE_LIMIT_RPS, 1),
        "memberships_correct": score.memberships_correct,
        "memberships_total": score.memberships_total,
        "converged_share": score.converged_share,
        "events_posted": score.events_posted,
        "repeated_events": score.repeated_events,
        "wall_s": round(run.wall_s, 3),
        "peak_rss_mb": None if run.peak_rss_mb is None else round(run.peak_rss_mb, 1),
        "drained": run.drained,
    }


def format_share(share: float) -> str:
    """A share as a percentage that never rounds a miss up to 100%."""
    return f"{math.floor(share * 1000) / 10:.1f}%"


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


class ProgressBars:
    """A `ProgressCallback` drawing one rich bar per stage; silent without a terminal."""

    def __init__(self, progress: Progress | None, labels: Mapping[str, str]) -> None:
        self.progress = progress
        self.labels = labels
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        if stage not in self.tasks:
            label = self.labels.get(stage, stage)
            self.tasks[stage] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


@contextmanager
def progress_bars(console: Console, labels: Mapping[str, str]) -> Iterator[ProgressBars]:
    """Progress bars on `console` while the block runs, only when it is a terminal."""
    if not console.is_terminal:
        yield ProgressBars(None, labels)
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield ProgressBars(progress, labels)
