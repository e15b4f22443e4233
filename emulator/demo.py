"""`pslab demo`: the whole story on one machine, with nothing to set up.

An emulator on a free loopback port (rate limit off), the quick workload
(reordering, duplicates, removals, late deliveries), the engine, then the
Segment destination's per-event algorithm on a fresh copy of the same world,
and one table comparing them. Exit 0 only when the engine converged.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from emulator.postscript.config import EmulatorConfig
from emulator.postscript.serve import serve_in_background
from emulator.segment.workload import PRESETS, build_workload
from emulator.sidebyside import (
    ENDPOINTS,
    RATE_LIMIT_RPS,
    ProgressCallback,
    WorkloadFacts,
    format_duration,
    format_share,
    progress_bars,
    run_baseline,
    run_engine,
    score_world,
    seed_world,
    system_summary,
)

__all__ = ["demo_command", "run_demo"]

STAGES = {
    "seed": "seeding subscribers",
    "engine:ingest": "engine: reading events",
    "engine:resolve": "engine: finding subscribers",
    "engine:write": "engine: writing",
    "baseline:deliver": "baseline: one event at a time",
    "score": "scoring both worlds",
}


def run_demo(
    *,
    state: Path | None = None,
    preset: str = "quick",
    seed: int | None = None,
    bars: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run both systems over one workload against one emulator; return the summary."""
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
        note("seed", 0, 2)
        seed_world(base_url, workload)
        note("seed", 1, 2)
        engine_run = run_engine(
            lines,
            base_url,
            state,
            progress=lambda stage, done, total: note(
                f"engine:{stage}", done, total if total is not None else len(lines)
            ),
        )
        note("score", 0, 2)
        engine_score = score_world(base_url, workload)
        note("score", 1, 2)
        seed_world(base_url, workload)
        note("seed", 2, 2)
        delivered = iter(range(1, len(lines) + 1))
        baseline_run = run_baseline(
            lines, base_url, on_event=lambda: note("baseline:deliver", next(delivered), len(lines))
        )
        baseline_score = score_world(base_url, workload)
        note("score", 2, 2)
    engine = system_summary(engine_run, engine_score, facts)
    return {
        "preset": preset,
        "workload": {
            "users": workload.config.users,
            "audiences": workload.config.audiences,
            "lines": facts.lines,
            "changes": facts.changes,
            "memberships": facts.memberships,
            "duplicate_rate": workload.config.duplicate_rate,
            "shuffle_window": workload.config.shuffle_window,
            "late_rate": workload.config.late_rate,
        },
        "rate_limit": "off; time_to_converge_at_15rps_s = api calls / 15",
        "lower_bound": facts.lower_bound(),
        "engine": engine,
        "baseline": system_summary(baseline_run, baseline_score, facts),
        "converged": engine["converged_share"] == 1.0 and engine["drained"],
        "wall_s": round(time.perf_counter() - started, 2),
    }


def demo_table(result: dict[str, Any]) -> Table:
    engine, baseline = result["engine"], result["baseline"]
    workload = result["workload"]
    table = Table(
        title=(
            f"pslab demo: {workload['lines']:,} Segment events for {workload['users']:,} shoppers"
            f" ({workload['changes']:,} membership changes; reordered, duplicated, late)"
        ),
        caption=(
            f"Emulator rate limit off; time at {RATE_LIMIT_RPS:.0f} req/s = API calls /"
            f" {RATE_LIMIT_RPS:.0f}. Lower bound (SPEC §5): {result['lower_bound']:,} calls."
        ),
    )
    table.add_column("", no_wrap=True)
    table.add_column("engine", justify="right")
    table.add_column("Segment destination", justify="right")

    def add(label: str, key: str, fmt: Any = "{:,}") -> None:
        table.add_row(label, fmt.format(engine[key]), fmt.format(baseline[key]))

    add("events received", "events_received")
    add("duplicates dropped", "duplicates_dropped")
    add("stale events skipped", "stale_skipped")
    for endpoint in ENDPOINTS:
        used = engine["api_calls"].get(endpoint, 0), baseline["api_calls"].get(endpoint, 0)
        if any(used):
            table.add_row(f"API calls: {endpoint}", f"{used[0]:,}", f"{used[1]:,}")
    table.add_row(
        "API calls, total",
        f"[bold]{engine['api_calls']['total']:,}[/]",
        f"[bold]{baseline['api_calls']['total']:,}[/]",
    )
    add("calls per membership change", "calls_per_change", "{:.2f}")
    table.add_row(
        f"time to converge at {RATE_LIMIT_RPS:.0f} req/s",
        format_duration(engine["time_to_converge_at_15rps_s"]),
        format_duration(baseline["time_to_converge_at_15rps_s"]),
    )
    table.add_row("memberships correct", _correct(engine), _correct(baseline))
    add("Postscript events posted", "events_posted")
    add("repeated Postscript events", "repeated_events")
    return table


def _correct(system: dict[str, Any]) -> str:
    share = system["converged_share"]
    colour = "green" if share == 1.0 else "red"
    total = system["memberships_total"]
    return f"[{colour}]{system['memberships_correct']:,} / {total:,} ({format_share(share)})[/]"


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
    with progress_bars(err, STAGES) as bars:
        result = run_demo(state=state, preset=preset, seed=seed, bars=bars)
    if as_json:
        print(json.dumps(result))
    else:
        console = Console()
        console.print(demo_table(result))
        verdict = "[green]converged[/]" if result["converged"] else "[red]did NOT converge[/]"
        console.print(f"The engine {verdict}; demo took {result['wall_s']:.1f} s.")
    if not result["converged"]:
        raise typer.Exit(1)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab demo: {message}", file=sys.stderr)
    raise typer.Exit(code)
