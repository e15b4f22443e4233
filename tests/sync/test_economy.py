"""SPEC §5 economy on the quick workload of SPEC §9: calls within 10% of the lower bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from emulator.segment.workload import build_workload
from tests.sync.world import World, audiences_of, by_identity


def test_the_quick_workload_costs_at_most_ten_percent_over_the_lower_bound(
    state_path: Path,
) -> None:
    workload = build_workload("quick")
    world = World()

    async def scenario() -> dict[str, Any]:
        await world.seed(*workload.subscribers)
        report = await world.sync(state_path, workload.iter_lines())
        return {"report": report, "state": await world.state()}

    result = anyio.run(scenario)
    report = result["report"]
    total = sum(report.api_calls.values())
    print(f"quick workload: api_calls.total={total} lower_bound={report.lower_bound}")
    assert report.pending == 0
    assert total <= 1.10 * report.lower_bound
    subscribers = by_identity(result["state"])
    for row in workload.expected:
        found = subscribers[row["phone_number"] or row["email"]]
        assert (row["audience_key"] in audiences_of(found)) is row["member"]
