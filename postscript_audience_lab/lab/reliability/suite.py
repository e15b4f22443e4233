"""The suite: seeds planned in turn and run a few at a time until enough kills happened, their
totals, the table, and the command line (`python -m postscript_audience_lab.lab.reliability`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from postscript_audience_lab.lab.reliability.plans import (
    FAULT_KINDS,
    KILL_POINTS,
    MUST_BE_ZERO,
    SeedPlan,
    SeedResult,
)
from postscript_audience_lab.lab.reliability.seed import run_seed

__all__ = [
    "SuiteConfig",
    "SuiteResult",
    "main",
    "plan_seeds",
    "reliability_command",
    "render_table",
    "run_seeds",
    "run_suite",
]


@dataclass(frozen=True)
class SuiteConfig:
    """How much to run: at least `seeds` seeds and `crashes` kills, `jobs` seeds at a time."""

    crashes: int = 40
    seeds: int = 4
    modes: tuple[str, ...] = ("crash", "fault")
    kinds: tuple[str, ...] = FAULT_KINDS  # fault kinds, taken in turn by fault-mode seeds
    kills_per_seed: int = 8
    fault_kills_per_seed: int = 3
    crash_users: tuple[int, int] = (60, 120)
    fault_users: tuple[int, int] = (30, 60)
    audiences: tuple[int, int] = (3, 4)
    jobs: int = 2
    first_seed: int = 1
    time_limit_s: float | None = None  # no new seed starts after this


def plan_seeds(config: SuiteConfig) -> Iterator[SeedPlan]:
    """Seeds in the order they run: modes alternate, fault kinds come in turn."""
    number = config.first_seed
    fault_turn = 0
    while True:
        for mode in config.modes:
            if mode == "crash":
                yield SeedPlan(
                    number,
                    "crash",
                    kills=config.kills_per_seed,
                    users=config.crash_users,
                    audiences=config.audiences,
                )
            else:
                kind = config.kinds[fault_turn % len(config.kinds)]
                fault_turn += 1
                kills = 2 if kind == "emulator_kill" else config.fault_kills_per_seed
                yield SeedPlan(
                    number, kind, kills=kills, users=config.fault_users, audiences=config.audiences
                )
            number += 1


@dataclass
class SuiteResult:
    """Every seed's result, and the totals the table shows."""

    config: SuiteConfig
    seeds: list[SeedResult] = field(default_factory=list)
    wall_s: float = 0.0
    time_limited: bool = False

    def totals(self, mode: str | None = None) -> Counter[str]:
        total: Counter[str] = Counter()
        for seed in self.seeds:
            if mode is None or seed.mode == mode:
                total.update(seed.figures())
        return total

    @property
    def crashes(self) -> int:
        return sum(seed.crashes for seed in self.seeds)

    @property
    def failures(self) -> list[str]:
        found = [
            f"seed {seed.seed} ({seed.kind}): {problem}"
            for seed in self.seeds
            for problem in seed.problems
        ]
        if self.crashes < self.config.crashes:
            found.append(f"only {self.crashes} crashes of the {self.config.crashes} asked for")
        return found

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        return {
            "config": config,
            "ok": self.ok,
            "wall_s": round(self.wall_s, 1),
            "time_limited": self.time_limited,
            "totals": dict(sorted(self.totals().items())),
            "by_mode": {
                mode: dict(sorted(self.totals(mode).items())) for mode in self.config.modes
            },
            "failures": self.failures,
            "seeds": [seed.to_json() for seed in self.seeds],
        }


def run_seeds(plans: Sequence[SeedPlan], jobs: int = 2) -> list[SeedResult]:
    """Run these seeds, `jobs` at a time (each in its own process); results in plan order."""
    context = get_context("spawn")  # the workers start threads (an emulator each): no fork
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
        return list(pool.map(run_seed, plans))


def run_suite(
    config: SuiteConfig, on_seed: Callable[[SeedResult, SuiteResult], None] | None = None
) -> SuiteResult:
    """Run seeds, `config.jobs` at a time, until both targets are met (or the time is up)."""
    started = time.monotonic()
    suite = SuiteResult(config)
    plans = plan_seeds(config)
    context = get_context("spawn")  # the workers start threads (an emulator each): no fork
    jobs = max(1, config.jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running: dict[Future[SeedResult], SeedPlan] = {}

        def wanted() -> bool:
            if config.time_limit_s is not None and time.monotonic() - started > config.time_limit_s:
                suite.time_limited = True
                return False
            # most planned kills land; seeds whose runs ended first are made up for after
            expected = suite.crashes + sum(p.kills for p in running.values())
            return len(suite.seeds) + len(running) < config.seeds or expected < config.crashes

        while True:
            while len(running) < jobs and wanted():
                plan = next(plans)
                running[pool.submit(run_seed, plan)] = plan
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                result = future.result()
                suite.seeds.append(result)
                if on_seed is not None:
                    on_seed(result, suite)
    suite.seeds.sort(key=lambda seed: seed.seed)
    suite.wall_s = time.monotonic() - started
    return suite


# -- the table ------------------------------------------------------------------------

ROWS: tuple[tuple[str, str], ...] = (
    ("seeds", "seeds"),
    ("sync_processes", "pslab sync processes"),
    ("events_delivered", "events delivered (lines fed, re-deliveries included)"),
    ("crashes", "crashes (SIGKILLs)"),
    *((f"kills_{point}", f"  pslab sync killed: {point}") for point in KILL_POINTS),
    ("emulator_kills", "  pslab emulator killed mid-write"),
    ("faults", "faults injected (journal)"),
    ("lost", "lost (unsettled changes + events missing)"),
    ("wrong_memberships", "wrong memberships"),
    ("memberships", "memberships checked"),
    ("repeated_events", "repeated Postscript events"),
    ("unexplained_repeats", "repeated events no kill explains"),
    ("repeats_over_kills", "  repeated events beyond one per kill"),
    ("kills_repeating_several", "  kills that repeated more than one event"),
    ("rejected_inputs", "rejected inputs (sum of `rejected`)"),
    ("refused", "refused by Postscript (sum of `refused`)"),
    ("refused_memberships", "memberships refused with a reason (400)"),
    ("refusals_unreported", "  refusals met by a run then killed (not in --rejects-out)"),
    ("tracebacks", "tracebacks in pslab sync stderr"),
    ("unexplained_failures", "runs failed with no fault to explain it"),
    ("server_errors_outside_faults", "emulator 5xx outside injected faults"),
    ("never_finished", "seeds never finished"),
    ("abandoned_calls", "calls a killed run hung up on (journal status null)"),
    ("emulator_tracebacks", "emulator tracebacks logged (client hang-ups)"),
)


def render_table(suite: SuiteResult) -> Table:
    """One table: a column per mode and the total; faults by kind under `faults injected`."""
    columns = [*suite.config.modes, "total"]
    figures = {mode: suite.totals(None if mode == "total" else mode) for mode in columns}
    table = Table(
        title=f"pslab sync crash and fault suite: {len(suite.seeds)} seeds, "
        f"{suite.crashes:,} crashes, {suite.wall_s / 60:.1f} min",
        caption="must be 0: " + ", ".join(MUST_BE_ZERO).replace("_", " "),
    )
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    fault_names = sorted(
        {name for column in columns for name in figures[column] if name.startswith("fault_")}
    )
    for key, label in ROWS:
        if key == "faults":
            total = [sum(figures[c][name] for name in fault_names) for c in columns]
            table.add_row(label, *(f"{value:,}" for value in total))
            for name in fault_names:
                counts = [f"{figures[c][name]:,}" for c in columns]
                table.add_row(f"  {name.removeprefix('fault_')}", *counts)
            continue
        mark = " (must be 0)" if key in MUST_BE_ZERO else ""
        table.add_row(label + mark, *(f"{figures[c][key]:,}" for c in columns))
    return table


def reliability_command(
    crashes: Annotated[
        int, typer.Option(min=0, help="Keep adding seeds until this many kills.")
    ] = 40,
    seeds: Annotated[int, typer.Option(min=1, help="Run at least this many seeds.")] = 4,
    mode: Annotated[str, typer.Option(help="crash, fault or both (alternating).")] = "both",
    jobs: Annotated[int, typer.Option(min=1, help="Seeds run at the same time.")] = 2,
    kills_per_seed: Annotated[int, typer.Option(min=1, help="Kills per crash-mode seed.")] = 8,
    first_seed: Annotated[int, typer.Option(help="The first seed's number.")] = 1,
    time_limit: Annotated[
        float | None, typer.Option(help="Minutes after which no new seed starts.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    json_out: Annotated[
        Path | None, typer.Option(help="Also write the JSON object to this file.")
    ] = None,
) -> None:
    """Kill and fault `pslab sync` on purpose, then check nothing was lost or repeated."""
    modes = {"both": ("crash", "fault"), "crash": ("crash",), "fault": ("fault",)}
    if mode not in modes:
        raise typer.BadParameter("choose crash, fault or both", param_hint="--mode")
    config = SuiteConfig(
        crashes=crashes,
        seeds=seeds,
        modes=modes[mode],
        jobs=jobs,
        kills_per_seed=kills_per_seed,
        first_seed=first_seed,
        time_limit_s=None if time_limit is None else time_limit * 60,
    )
    err = Console(stderr=True)

    def progress(result: SeedResult, suite: SuiteResult) -> None:
        verdict = "ok" if not result.problems else f"FAILED: {'; '.join(result.problems)[:300]}"
        err.print(
            f"seed {result.seed:>4} {result.kind:<14} {result.crashes:>2} crashes "
            f"{result.processes:>2} runs {result.wall_s:5.1f} s  "
            f"[{suite.crashes} crashes in all] {verdict}",
            highlight=False,
        )

    suite = run_suite(config, on_seed=progress)
    if json_out is not None:
        json_out.write_text(json.dumps(suite.to_json(), sort_keys=True) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps(suite.to_json(), sort_keys=True))
    else:
        console = Console()
        console.print(render_table(suite))
        for failure in suite.failures:
            console.print(f"[red]FAILED[/] {failure}", highlight=False)
        console.print("ok" if suite.ok else "the suite found problems", highlight=False)
    if not suite.ok:
        raise typer.Exit(1)


def main() -> None:
    """`python -m postscript_audience_lab.lab.reliability`."""
    typer.run(reliability_command)
