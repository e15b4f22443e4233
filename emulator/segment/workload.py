"""Ready-made traffic: subscribers to seed, Segment lines as delivered, expected membership.

`build_workload("standard")` is the workload of docs/design/benchmark.md (10,000 shoppers,
8 audiences, backfill p=0.3, three rounds flipping 10%, 10% duplicates,
windows of 500, 2% late; about 35,000 lines). `build_workload("quick")` is the
same shape at CI size (500 shoppers, 8 audiences, windows of 100; about 1,700
lines). Any `WorkloadConfig` field can be overridden by keyword.

`string_bool_rate` (events whose membership is the string "true"/"false") and
`omitted_journey_value_rate` (journey-step entries without a value) and
`single_identifier_rate` (events of a phone+email shopper that carry only one
of the two) shape the spelling only: the ground truth reads them as docs/design/events.md
does and names every pair by its subscriber (docs/design/convergence.md), whichever identifier
an event carried.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from postscript_audience_lab.emulator.segment.delivery import DeliveryConfig, deliver, serialise
from postscript_audience_lab.emulator.segment.events import format_timestamp
from postscript_audience_lab.emulator.segment.scenario import GroundTruth, Scenario, ScenarioConfig

__all__ = ["PRESETS", "Workload", "WorkloadConfig", "build_workload"]


@dataclass(frozen=True)
class WorkloadConfig:
    """The scenario's and the delivery's settings in one flat config; each field goes to
    the `ScenarioConfig` / `DeliveryConfig` field of the same name."""

    users: int = 500
    audiences: int = 4
    backfill_p: float = 0.3
    rounds: int = 3
    flip_rate: float = 0.1
    tie_rate: float = 0.005
    string_bool_rate: float = 0.05
    omitted_journey_value_rate: float = 0.5
    single_identifier_rate: float = 0.1
    duplicate_rate: float = 0.1
    shuffle_window: int = 100
    late_rate: float = 0.02
    batch_size: int = 0
    unseeded_rate: float = 0.0
    seed: int = 1


PRESETS: dict[str, WorkloadConfig] = {
    "standard": WorkloadConfig(users=10_000, audiences=8, shuffle_window=500),
    "quick": WorkloadConfig(users=500, audiences=8, shuffle_window=100),
}


class Workload:
    """One seeded workload; every property and `iter_lines()` is deterministic."""

    def __init__(self, config: WorkloadConfig) -> None:
        self.config = config
        self.scenario = Scenario(ScenarioConfig(**_shared(config, ScenarioConfig)))
        self.delivery = DeliveryConfig(**_shared(config, DeliveryConfig))

    def iter_lines(self) -> Iterator[str]:
        """NDJSON lines (no trailing newline) in delivery order; re-iterable."""
        return deliver(self.scenario.events(), self.delivery)

    def iter_lines_in_order(self) -> Iterator[str]:
        """Every event exactly once, in true version order: the delivery nobody gets."""
        return (serialise(event) for event in self.scenario.events())

    @cached_property
    def truth(self) -> GroundTruth:
        return self.scenario.ground_truth()

    @cached_property
    def seeded(self) -> list[bool]:
        """Which shoppers exist in Postscript before the sync (all, unless `unseeded_rate`)."""
        rng = random.Random(f"{self.config.seed}:seeding")
        return [rng.random() >= self.config.unseeded_rate for _ in range(self.config.users)]

    @property
    def subscribers(self) -> list[dict[str, Any]]:
        """Items for `POST /_emulator/subscribers` (`{"subscribers": [...]}`)."""
        start = self.scenario.config.start
        items: list[dict[str, Any]] = []
        for index, shopper in enumerate(self.scenario.population.shoppers()):
            if not self.seeded[index]:
                continue
            item: dict[str, Any] = {}
            if shopper.phone:
                item["phone_number"] = shopper.phone
            if shopper.email:
                item["email"] = shopper.email
            created = start - timedelta(days=30) + timedelta(seconds=index)
            item["created_at"] = format_timestamp(created)
            items.append(item)
        return items

    @property
    def expected(self) -> list[dict[str, Any]]:
        """Final membership of every seeded (subscriber, audience) the traffic mentions."""
        return self._memberships(seeded=True)

    @property
    def unseeded_expected(self) -> list[dict[str, Any]]:
        """What the traffic says about shoppers who are not subscribers (parked by an engine)."""
        return self._memberships(seeded=False)

    @property
    def expected_event_count(self) -> int:
        """Postscript events a correct engine posts draining everything in one run."""
        return sum(
            1 for (user, _), member in self.truth.final.items() if member and self.seeded[user]
        )

    def _memberships(self, *, seeded: bool) -> list[dict[str, Any]]:
        population = self.scenario.population
        audiences = population.all_audiences()
        rows = []
        for (user, audience), member in sorted(self.truth.final.items()):
            if self.seeded[user] != seeded:
                continue
            shopper = population.shopper(user)
            rows.append(
                {
                    "phone_number": shopper.phone,
                    "email": shopper.email,
                    "audience_key": audiences[audience].key,
                    "member": member,
                }
            )
        return rows


def _shared(config: WorkloadConfig, part: type[Any]) -> dict[str, Any]:
    """The workload's values of the fields `part` (scenario or delivery config) also has."""
    names = {f.name for f in dataclasses.fields(part)}
    return {name: getattr(config, name) for name in names if hasattr(config, name)}


def build_workload(preset: str = "quick", **overrides: Any) -> Workload:
    """The named preset (`standard` or `quick`), with any `WorkloadConfig` field overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    known = {f.name for f in dataclasses.fields(WorkloadConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown workload setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    chosen = {name: value for name, value in overrides.items() if value is not None}
    return Workload(dataclasses.replace(PRESETS[preset], **chosen))
