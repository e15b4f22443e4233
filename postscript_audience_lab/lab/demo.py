"""`pslab demo`: the whole story on one machine, with nothing to set up.

An emulator on a free loopback port (rate limit off), the quick workload
(reordering, duplicates, removals, late deliveries), the engine, then the
Segment destination's per-event algorithm on a fresh copy of the same world,
and one table comparing them; then `pslab reconcile` repairs the destination's
world from a full snapshot of the truth (one line). Exit 0 only when the engine
converged.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.emulator.segment.workload import PRESETS, build_workload
from postscript_audience_lab.lab.comparison import (
    Comparison,
    ProgressCallback,
    Run,
    WorkloadFacts,
    compare,
    run_baseline,
    run_engine,
)
from postscript_audience_lab.lab.render import progress_bars, rich_table
from postscript_audience_lab.lab.repair import Repair, repair_with_snapshot

__all__ = ["demo_command", "run_demo"]

STAGES = {
    "engine:ingest": "engine: reading events",
    "engine:resolve": "engine: finding subscribers",
    "engine:write": "engine: writing",
    "baseline:deliver": "baseline: one event at a time",
}


def run_demo(
    *,
    state: Path | None = None,
    preset: str = "quick",
    seed: int | None = None,
    bars: ProgressCallback | None = None,
    on_repair: Callable[[Repair], None] | None = None,
) -> Comparison:
    """Run both systems over one workload against one emulator; return the comparison.

    With `on_repair`, the destination's world is then reconciled to the truth, and
    `on_repair` gets what that did.
    """
    note = bars or (lambda stage, done, total: None)
    started = time.perf_counter()
    workload = build_workload(preset, seed=seed)
    lines = list(workload.iter_lines())
    facts = WorkloadFacts.of(workload, len(lines))
    with ExitStack() as stack:
        base_url = stack.enter_context(serve_in_background(EmulatorConfig(rate_limit_rps=0)))
        if state is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pslab-demo-")))
            state = folder / "state.sqlite"
        state_path = state

        def run_system(system: str) -> Run:
            if system == "engine":
                return run_engine(
                    lines,
                    base_url,
                    state_path,
                    progress=lambda stage, done, total: note(
                        f"engine:{stage}", done, total if total is not None else len(lines)
                    ),
                )
            delivered = iter(range(1, len(lines) + 1))
            return run_baseline(
                lines,
                base_url,
                on_event=lambda: note("baseline:deliver", next(delivered), len(lines)),
            )

        engine, baseline = compare(workload, facts, base_url, run_system)
        if on_repair is not None:  # the world is the destination's now
            on_repair(repair_with_snapshot(base_url, workload))
    return Comparison(
        preset=preset,
        workload=workload.config,
        facts=facts,
        engine=engine,
        baseline=baseline,
        wall_s=round(time.perf_counter() - started, 2),
    )


def demo_command(
    state: Annotated[
        Path | None,
        typer.Option(help="Keep the engine's SQLite state here (a new file); default: a temp one."),
    ] = None,
    preset: Annotated[
        str, typer.Option(help=f"Workload: {' or '.join(PRESETS)} (standard takes minutes).")
    ] = "quick",
    seed: Annotated[int | None, typer.Option(help="Seed of the generated traffic.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Run the engine and the Segment destination side by side on a local emulator."""
    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose {' or '.join(PRESETS)}", code=2)
    if state is not None and state.exists():
        _fail(f"{state} already exists; pass a new --state path or delete it", code=2)
    err = Console(stderr=True)
    repairs: list[Repair] = []
    with progress_bars(err, STAGES) as bars:
        result = run_demo(
            state=state, preset=preset, seed=seed, bars=bars, on_repair=repairs.append
        )
    if as_json:
        print(json.dumps({**result.to_json(), "repair": repairs[0].to_json()}))
    else:
        console = Console()
        console.print(rich_table(result))
        verdict = "[green]converged[/]" if result.converged else "[red]did NOT converge[/]"
        console.print(f"The engine {verdict}; demo took {result.wall_s or 0:.1f} s.")
        console.print(repairs[0].line())
    if not result.converged:
        raise typer.Exit(1)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab demo: {message}", file=sys.stderr)
    raise typer.Exit(code)
