"""How a `Comparison` is shown: one list of rows, drawn as a rich table or as Markdown.

`pslab demo` prints the rich table, `pslab bench` the Markdown one the README's
Performance section shows; both come from `rows`, so they list the same
figures in the same order. Progress bars for the long runs live here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

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
from rich.table import Table

from postscript_audience_lab.lab.comparison import (
    ENDPOINTS,
    RATE_LIMIT_RPS,
    Comparison,
    SystemResult,
)

__all__ = [
    "ProgressBars",
    "Row",
    "markdown",
    "progress_bars",
    "rich_table",
    "rows",
]


@dataclass(frozen=True)
class Row:
    label: str
    engine: str
    baseline: str
    strong: bool = False  # the row a reader looks for first


def rows(comparison: Comparison) -> list[Row]:
    """The figures of both systems, in the order every rendering shows them."""
    engine, baseline = comparison.engine, comparison.baseline
    found: list[Row] = []

    def add(label: str, value: str, strong: bool = False) -> None:
        found.append(Row(label, *_pair(engine, baseline, value), strong=strong))

    add("events received", "{0.events_received:,}")
    add("duplicates dropped", "{0.duplicates_dropped:,}")
    add("stale events skipped", "{0.stale_skipped:,}")
    for endpoint in ENDPOINTS:
        used = engine.api_calls.get(endpoint, 0), baseline.api_calls.get(endpoint, 0)
        if any(used):
            found.append(Row(f"API calls: {endpoint}", f"{used[0]:,}", f"{used[1]:,}"))
    add("API calls, total", "{0.calls_total:,}", strong=True)
    add("calls per membership change", "{0.calls_per_change:.3f}")
    found.append(
        Row(
            f"time to converge at {RATE_LIMIT_RPS:.0f} req/s",
            format_duration(engine.time_to_converge_at_15rps_s),
            format_duration(baseline.time_to_converge_at_15rps_s),
        )
    )
    found.append(Row("memberships correct", _correct(engine), _correct(baseline)))
    add("Postscript events posted", "{0.events_posted:,}")
    add("repeated Postscript events", "{0.repeated_events:,}")
    add("wall time, rate limit off", "{0.wall_s:.1f} s")
    if engine.peak_rss_mb is not None and baseline.peak_rss_mb is not None:
        add("peak memory (RSS)", "{0.peak_rss_mb:.0f} MB")
    return found


def _pair(engine: SystemResult, baseline: SystemResult, template: str) -> tuple[str, str]:
    return template.format(engine), template.format(baseline)


def _correct(system: SystemResult) -> str:
    return (
        f"{system.memberships_correct:,} / {system.memberships_total:,}"
        f" ({format_share(system.converged_share)})"
    )


def caption(comparison: Comparison) -> str:
    bound = comparison.lower_bound
    calls = comparison.engine.calls_total
    ratio = comparison.baseline.calls_total / calls if calls else math.inf
    return (
        f"Lower bound (docs/design/economy.md): {bound:,} calls; engine = {calls / bound:.3f}"
        " x bound,"
        f" baseline / engine = {ratio:.2f}. The emulator's rate limit is off: time at"
        f" {RATE_LIMIT_RPS:.0f} req/s is API calls / {RATE_LIMIT_RPS:.0f}, wall time is what"
        " it took."
    )


def title(comparison: Comparison) -> str:
    facts, config = comparison.facts, comparison.workload
    return (
        f"Workload `{comparison.preset}`: {facts.lines:,} Segment events for {config.users:,}"
        f" shoppers in {config.audiences} audiences ({facts.changes:,} membership changes,"
        f" {facts.memberships:,} memberships; reordered, duplicated, late)"
    )


def rich_table(comparison: Comparison) -> Table:
    table = Table(title=title(comparison), caption=caption(comparison))
    table.add_column("", no_wrap=True)
    table.add_column("engine", justify="right")
    table.add_column("Segment destination", justify="right")
    colours = {True: "green", False: "red"}
    for row in rows(comparison):
        engine, baseline = row.engine, row.baseline
        if row.strong:
            engine, baseline = f"[bold]{engine}[/]", f"[bold]{baseline}[/]"
        if row.label == "memberships correct":
            engine = f"[{colours[comparison.engine.converged_share == 1.0]}]{engine}[/]"
            baseline = f"[{colours[comparison.baseline.converged_share == 1.0]}]{baseline}[/]"
        table.add_row(row.label, engine, baseline)
    return table


def markdown(comparison: Comparison) -> str:
    """The comparison as the Markdown table the README's Performance section shows."""
    lines = [
        title(comparison) + ".",
        "",
        "| | engine | Segment destination (baseline) |",
        "|---|---:|---:|",
    ]
    for row in rows(comparison):
        if row.strong:
            lines.append(f"| **{row.label}** | **{row.engine}** | **{row.baseline}** |")
        else:
            lines.append(f"| {row.label} | {row.engine} | {row.baseline} |")
    lines += ["", caption(comparison)]
    million = comparison.million
    if million is not None:
        verdict = "within" if million.within_memory_limit else "OVER"
        lines += [
            "",
            f"Engine on {million.events:,} events ({million.input}):"
            f" {million.events_per_s or 0:,} events/s end to end ({million.wall_s:.0f} s;"
            f" ingest alone {million.ingest_events_per_s or 0:,} events/s),"
            f" {sum(million.api_calls.values()):,} API calls, peak memory"
            f" **{million.peak_rss_mb:.0f} MB** ({verdict} the"
            f" {million.memory_limit_mb:.0f} MB limit).",
        ]
    return "\n".join(lines)


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
