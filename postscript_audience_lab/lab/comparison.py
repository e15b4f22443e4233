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
  (so a correct engine posts none, docs/design/convergence.md#events-mirror-changes);
- the lower bound is docs/design/economy.md's: ceil(identities / lookup batch) + subscribers
  whose list changes + list entries that change (each posts one event), where
  identities are the distinct subscribers the traffic names, and the changes
  are the net ones from the seeded state (empty lists) to the ground truth.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import anyio
import httpx

from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY
from postscript_audience_lab.emulator.segment import baseline
from postscript_audience_lab.emulator.segment.baseline import AUDIENCE_PROPERTY
from postscript_audience_lab.emulator.segment.workload import Workload, WorkloadConfig
from postscript_audience_lab.sync.engine import Engine, ProgressCallback
from postscript_audience_lab.sync.settings import Settings

__all__ = [
    "ENDPOINTS",
    "RATE_LIMIT_RPS",
    "Comparison",
    "MillionResult",
    "ProgressCallback",
    "Run",
    "Score",
    "SystemResult",
    "WorkloadFacts",
    "compare",
    "count_repeated",
    "index_subscribers",
    "run_baseline",
    "run_engine",
    "score_world",
    "seed_world",
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


def index_subscribers(
    state: Mapping[str, Any],
) -> tuple[dict[str, Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    """The emulator state's subscribers by phone and by lower-cased email."""
    by_phone: dict[str, Mapping[str, Any]] = {}
    by_email: dict[str, Mapping[str, Any]] = {}
    for subscriber in state["subscribers"]:
        if subscriber.get("phone_number"):
            by_phone[subscriber["phone_number"]] = subscriber
        if subscriber.get("email"):
            by_email[str(subscriber["email"]).lower()] = subscriber
    return by_phone, by_email


def score_world(base_url: str, workload: Workload) -> Score:
    """Read `/_emulator/state` and score it against the workload's expected memberships."""
    with httpx.Client(base_url=base_url, timeout=300) as admin:
        response = admin.get("/_emulator/state")
        response.raise_for_status()
        state = response.json()
    by_phone, by_email = index_subscribers(state)
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


@dataclass(frozen=True)
class SystemResult:
    """One system's figures after scoring: what `pslab demo` and `pslab bench` print."""

    events_received: int
    duplicates_dropped: int
    stale_skipped: int
    api_calls: Mapping[str, int]  # by endpoint; every endpoint of ENDPOINTS present
    calls_per_change: float
    time_to_converge_at_15rps_s: float
    memberships_correct: int
    memberships_total: int
    events_posted: int
    repeated_events: int
    wall_s: float
    peak_rss_mb: float | None
    drained: bool

    @classmethod
    def of(cls, run: Run, score: Score, facts: WorkloadFacts) -> SystemResult:
        calls = {endpoint: run.api_calls.get(endpoint, 0) for endpoint in ENDPOINTS}
        calls.update(run.api_calls)
        total = sum(calls.values())
        return cls(
            events_received=run.received,
            duplicates_dropped=run.duplicates_dropped,
            stale_skipped=run.stale_skipped,
            api_calls=calls,
            calls_per_change=round(total / facts.changes, 4) if facts.changes else 0.0,
            time_to_converge_at_15rps_s=round(total / RATE_LIMIT_RPS, 1),
            memberships_correct=score.memberships_correct,
            memberships_total=score.memberships_total,
            events_posted=score.events_posted,
            repeated_events=score.repeated_events,
            wall_s=round(run.wall_s, 3),
            peak_rss_mb=None if run.peak_rss_mb is None else round(run.peak_rss_mb, 1),
            drained=run.drained,
        )

    @property
    def calls_total(self) -> int:
        return sum(self.api_calls.values())

    @property
    def converged_share(self) -> float:
        if self.memberships_total == 0:
            return 1.0
        return self.memberships_correct / self.memberships_total

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_calls"] = {"total": self.calls_total, **self.api_calls}
        data["converged_share"] = self.converged_share
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SystemResult:
        return cls(**_stored_fields(cls, data))


@dataclass(frozen=True)
class MillionResult:
    """The engine streaming a million-event file: throughput and peak memory."""

    input: str
    events: int
    wall_s: float
    ingest_s: float
    api_calls: Mapping[str, int]
    duplicates_dropped: int
    stale_skipped: int
    drained: bool
    peak_rss_mb: float
    memory_limit_mb: float

    @property
    def events_per_s(self) -> int | None:
        return round(self.events / self.wall_s) if self.wall_s else None

    @property
    def ingest_events_per_s(self) -> int | None:
        return round(self.events / self.ingest_s) if self.ingest_s else None

    @property
    def within_memory_limit(self) -> bool:
        return self.peak_rss_mb <= self.memory_limit_mb

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_calls"] = {"total": sum(self.api_calls.values()), **self.api_calls}
        data["events_per_s"] = self.events_per_s
        data["ingest_events_per_s"] = self.ingest_events_per_s
        data["within_memory_limit"] = self.within_memory_limit
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MillionResult:
        return cls(**_stored_fields(cls, data))


def _stored_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The dataclass's own fields from its JSON: derived figures and the calls' total dropped."""
    names = {f.name for f in fields(cls)}
    values = {key: value for key, value in data.items() if key in names}
    values["api_calls"] = {k: v for k, v in data["api_calls"].items() if k != "total"}
    return values


@dataclass(frozen=True)
class Comparison:
    """Both systems on one workload: the result `pslab demo` and `pslab bench` share."""

    preset: str
    workload: WorkloadConfig
    facts: WorkloadFacts
    engine: SystemResult
    baseline: SystemResult
    million: MillionResult | None = None
    wall_s: float | None = None

    @property
    def lower_bound(self) -> int:
        return self.facts.lower_bound()

    @property
    def converged(self) -> bool:
        """The engine got every membership right and left nothing pending or parked."""
        return self.engine.converged_share == 1.0 and self.engine.drained

    def to_json(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "workload": {**asdict(self.workload), **asdict(self.facts)},
            "rate_limit": "off; time_to_converge_at_15rps_s = api calls / 15",
            "lower_bound": self.lower_bound,
            "engine": self.engine.to_json(),
            "baseline": self.baseline.to_json(),
            "million": None if self.million is None else self.million.to_json(),
            "converged": self.converged,
            "wall_s": self.wall_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Comparison:
        workload = data["workload"]
        config_names = {f.name for f in fields(WorkloadConfig)}
        fact_names = {f.name for f in fields(WorkloadFacts)}
        million = data.get("million")
        return cls(
            preset=data["preset"],
            workload=WorkloadConfig(**{k: v for k, v in workload.items() if k in config_names}),
            facts=WorkloadFacts(**{k: v for k, v in workload.items() if k in fact_names}),
            engine=SystemResult.from_json(data["engine"]),
            baseline=SystemResult.from_json(data["baseline"]),
            million=None if million is None else MillionResult.from_json(million),
            wall_s=data.get("wall_s"),
        )


def compare(
    workload: Workload,
    facts: WorkloadFacts,
    base_url: str,
    run_system: Callable[[str], Run],
) -> tuple[SystemResult, SystemResult]:
    """Seed a fresh world, run each system with `run_system`, score it: engine, then baseline."""
    results = []
    for system in ("engine", "baseline"):
        seed_world(base_url, workload)
        run = run_system(system)
        results.append(SystemResult.of(run, score_world(base_url, workload), facts))
    return results[0], results[1]
