"""docs/design/economy.md on the quick workload of docs/design/benchmark.md: calls within 10% of the
lower bound."""

from __future__ import annotations

from pathlib import Path

import anyio

from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.sync.engine import Engine
from tests.sync.world import World, audiences_of, by_identity


def test_the_quick_workload_costs_at_most_ten_percent_over_the_lower_bound(
    state_path: Path,
) -> None:
    workload = build_workload("quick")
    world = World()
    anyio.run(world.seed, *workload.subscribers)

    with Engine(world.settings(state_path), world.transport) as engine:
        report = engine.run(workload.iter_lines())  # the blocking helper: ingest, then drain

    total = sum(report.api_calls.values())
    print(f"quick workload: api_calls.total={total} lower_bound={report.lower_bound}")
    assert report.pending == 0
    assert report.as_dict()["api_calls"]["total"] == total
    assert total <= 1.10 * report.lower_bound
    subscribers = by_identity(anyio.run(world.state))
    assert workload.expected
    for row in workload.expected:
        found = subscribers[row["phone_number"] or row["email"]]
        assert (row["audience_key"] in audiences_of(found)) is row["member"]
