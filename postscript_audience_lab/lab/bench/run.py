"""Run the benchmark: both systems on one seeded workload, then the million-event stream.

The emulator runs in this process (rate limit off); each system runs in its
own child process (multiprocessing, spawn), so the peak resident memory it
reports (`VmHWM`) is its own. Between the systems the emulator is reset
and reseeded, so both start from the same world. Time to converge at
15 requests/s is computed as calls / 15, not waited for.

The million-event part streams 1,000,000 delivered lines from a file through
the engine in a child process and reports its throughput and peak memory
(`MillionShape` says what exactly the input is).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.emulator.segment.workload import Workload, build_workload
from postscript_audience_lab.lab.bench.child import run_in_child
from postscript_audience_lab.lab.bench.targets import MEMORY_LIMIT_MB
from postscript_audience_lab.lab.comparison import (
    Comparison,
    MillionResult,
    ProgressCallback,
    Run,
    WorkloadFacts,
    compare,
    seed_world,
)

__all__ = ["STAGES", "MillionShape", "run_bench"]

STAGES = {
    "generate": "writing the workload",
    "engine:ingest": "engine: reading events",
    "engine:resolve": "engine: finding subscribers",
    "engine:write": "engine: writing",
    "baseline:deliver": "baseline: one event at a time",
    "million:generate": "1M: writing events",
    "million:ingest": "1M: engine reading events",
    "million:resolve": "1M: engine finding subscribers",
    "million:write": "1M: engine writing",
}


@dataclass(frozen=True)
class MillionShape:
    """The 1,000,000-event input: the standard population, many rounds, events off.

    Many recomputation rounds over 10,000 shoppers give a long history whose
    drain is bounded by the population (at most one PATCH per subscriber),
    not by the number of events; posting no Postscript events (`--no-events`)
    keeps the drain to lookups and PATCHes, so the run measures ingest,
    ledger and planning, which is where memory could grow.
    """

    events: int = 1_000_000
    users: int = 10_000
    audiences: int = 8
    rounds: int = 140  # about 1,070,000 lines; the first 1,000,000 are used
    flip_rate: float = 0.3
    post_events: bool = False

    def workload(self) -> Workload:
        return build_workload(
            "standard",
            users=self.users,
            audiences=self.audiences,
            rounds=self.rounds,
            flip_rate=self.flip_rate,
        )


# -- the benchmark ------------------------------------------------------------


def _write_lines(lines: Iterator[str], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")
            count += 1
    return count


def run_bench(
    preset: str = "standard",
    *,
    million: bool = False,
    seed: int | None = None,
    progress: ProgressCallback | None = None,
) -> Comparison:
    """Run both systems (and optionally the million-event input) and compare them."""
    note = progress or (lambda stage, done, total: None)
    workload = build_workload(preset, seed=seed)
    with tempfile.TemporaryDirectory(prefix="pslab-bench-") as scratch:
        folder = Path(scratch)
        lines_path = folder / "events.ndjson"
        note("generate", 0, None)
        facts = WorkloadFacts.of(workload, _write_lines(workload.iter_lines(), lines_path))
        note("generate", facts.lines, facts.lines)
        with serve_in_background(EmulatorConfig(rate_limit_rps=0)) as base_url:

            def run_system(system: str) -> Run:
                forward = _prefixed(note, system, facts.lines)
                return run_in_child(system, lines_path, base_url, folder, progress=forward)

            engine, baseline = compare(workload, facts, base_url, run_system)
            lines_path.unlink()
            million_result = _run_million(base_url, folder, note) if million else None
    return Comparison(
        preset=preset,
        workload=workload.config,
        facts=facts,
        engine=engine,
        baseline=baseline,
        million=million_result,
    )


def _prefixed(note: ProgressCallback, prefix: str, lines: int) -> ProgressCallback:
    """Progress of one run's stages, reading an unknown total as "every line"."""

    def forward(stage: str, done: int, total: int | None) -> None:
        note(f"{prefix}:{stage}", done, lines if total is None else total)

    return forward


def _run_million(base_url: str, folder: Path, note: ProgressCallback) -> MillionResult:
    shape = MillionShape()
    workload = shape.workload()
    path = folder / "million.ndjson"
    note("million:generate", 0, shape.events)
    written = _write_lines(itertools.islice(workload.iter_lines(), shape.events), path)
    note("million:generate", written, shape.events)
    seed_world(base_url, workload)
    state_dir = folder / "million"
    state_dir.mkdir()
    run = run_in_child(
        "engine",
        path,
        base_url,
        state_dir,
        post_events=shape.post_events,
        progress=_prefixed(note, "million", written),
    )
    path.unlink()
    return MillionResult(
        input=(
            f"the first {written:,} lines of the standard population ({shape.users:,} shoppers,"
            f" {shape.audiences} audiences) with {shape.rounds} rounds flipping"
            f" {shape.flip_rate:.0%}, streamed from an NDJSON file; events posting off"
        ),
        events=written,
        wall_s=round(run.wall_s, 1),
        ingest_s=round(run.ingest_s, 1),
        api_calls=dict(run.api_calls),
        duplicates_dropped=run.duplicates_dropped,
        stale_skipped=run.stale_skipped,
        drained=run.drained,
        peak_rss_mb=round(run.peak_rss_mb or 0.0, 1),
        memory_limit_mb=MEMORY_LIMIT_MB,
    )
