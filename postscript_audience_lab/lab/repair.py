"""The demo's last act: `pslab reconcile` repairs a world another system left wrong.

After the Segment destination has run, its world is missing members and holds
ones it should not. A full snapshot of what Engage knows (the workload's ground
truth) reconciled into that world makes every membership right, through the
engine's own write path; this module runs it and scores the world before and after.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from postscript_audience_lab.emulator.segment.workload import Workload
from postscript_audience_lab.lab.comparison import SECRET_KEY, Score, score_world
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.reconcile import Reconciliation, apply_reconcile, plan_reconcile
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.settings import Settings
from postscript_audience_lab.sync.snapshot import Snapshot, read_snapshot

__all__ = ["Repair", "repair_with_snapshot", "truth_snapshot"]


@dataclass(frozen=True)
class Repair:
    """What reconciling the ground truth into a world did."""

    before: Score
    after: Score
    adds: int
    removes: int
    api_calls: int
    list_pages: int
    wall_s: float

    def line(self) -> str:
        return (
            f"pslab reconcile, given a full snapshot of the truth, repaired the destination's "
            f"world: memberships correct {self.before.converged_share:.1%} -> "
            f"{self.after.converged_share:.1%} (+{self.adds:,} -{self.removes:,}, "
            f"{self.api_calls:,} API calls of which {self.list_pages:,} listing pages)."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "converged_share_before": self.before.converged_share,
            "converged_share_after": self.after.converged_share,
            "adds": self.adds,
            "removes": self.removes,
            "api_calls": self.api_calls,
            "list_pages": self.list_pages,
            "wall_s": self.wall_s,
        }


def truth_snapshot(workload: Workload) -> Snapshot:
    """Who is in each audience the traffic names, as the CSV a user would pass."""
    expected = workload.expected
    lines = ["audience_key,phone,email"]
    for row in expected:
        if row["member"]:
            lines.append(f"{row['audience_key']},{row['phone_number'] or ''},{row['email'] or ''}")
    audiences = sorted({str(row["audience_key"]) for row in expected})
    return read_snapshot(io.StringIO("\n".join(lines) + "\n"), audiences=audiences)


def repair_with_snapshot(base_url: str, workload: Workload) -> Repair:
    """Reconcile the ground truth into the world at `base_url` (pacing off), and score it."""
    started = time.perf_counter()
    before = score_world(base_url, workload)
    snapshot = truth_snapshot(workload)
    with tempfile.TemporaryDirectory(prefix="pslab-repair-") as folder:
        settings = Settings(
            base_url=base_url,
            secret_key=SECRET_KEY,
            state_path=Path(folder) / "state.sqlite",
            rate_limit=0,
        )
        with Engine(settings) as engine:

            async def reconcile() -> tuple[Reconciliation, Report]:
                planned = await plan_reconcile(engine, snapshot, datetime.now(UTC))
                # the truth is complete by construction: no guard is needed against truncation
                report = await apply_reconcile(
                    engine, planned, max_removal_share=1.0, allow_empty=True
                )
                return planned, report

            planned, report = anyio.run(reconcile)
            planned.close()  # its temporary databases; the plans' counts stay
    return Repair(
        before=before,
        after=score_world(base_url, workload),
        adds=sum(len(plan.adds) for plan in planned.plans),
        removes=sum(len(plan.removes) for plan in planned.plans),
        api_calls=sum(report.api_calls.values()),
        list_pages=planned.pages,
        wall_s=round(time.perf_counter() - started, 2),
    )
