"""`pslab bench`: the benchmark of SPEC §9, both systems on one seeded workload in one run.

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
import json
import multiprocessing
import queue
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from emulator.postscript.config import EmulatorConfig
from emulator.postscript.serve import serve_in_background
from emulator.segment.workload import PRESETS, Workload, build_workload
from emulator.sidebyside import (
    ProgressCallback,
    Run,
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

__all__ = [
    "MEMORY_LIMIT_MB",
    "MillionShape",
    "check",
    "markdown",
    "run_bench",
]

MEMORY_LIMIT_MB = 200.0
MAX_CALLS_OVER_BOUND = 1.10
MIN_SAVING_OVER_BASELINE = 2.5

STAGES = {
    "generate": "writing the workload",
    "engine:ingest": "engine: reading events",
    "engine:resolve": "engine: finding subscribers",
    "engine:write": "engine: writing",
    "engine:score": "engine: reading the emulator back",
    "baseline:deliver": "baseline: one event at a time",
    "baseline:score": "baseline: reading the emulator back",
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


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB.

    On Linux this is `VmHWM`, not `ru_maxrss`: a spawned child's `ru_maxrss`
    starts at its parent's resident size (the kernel carries the high-water
    mark across fork and exec), which would charge the emulator's memory to
    the system under test.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# -- one system in a child process --------------------------------------------


def _child(
    system: str,
    lines_path: str,
    base_url: str,
    state_dir: str,
    post_events: bool,
    messages: multiprocessing.Queue[tuple[str, Any]],
) -> None:
    """Run one system over the file; send progress, then the `Run` (or the error)."""
    last = 0.0

    def report(stage: str, done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.2 or done == total:
            last = now
            messages.put(("progress", (stage, done, total)))

    try:
        with open(lines_path, encoding="utf-8") as lines:
            if system == "engine":
                state = Path(state_dir) / "engine-state.sqlite"
                run = run_engine(lines, base_url, state, post_events=post_events, progress=report)
            else:
                seen = itertools.count(1)
                run = run_baseline(
                    lines, base_url, on_event=lambda: report("deliver", next(seen), None)
                )
        run.peak_rss_mb = peak_rss_mb()
        messages.put(("run", run.to_json()))
    except Exception as error:  # the parent reports it; a child has no one else to tell
        messages.put(("error", f"{type(error).__name__}: {error}"))


def run_in_child(
    system: str,
    lines_path: Path,
    base_url: str,
    state_dir: Path,
    *,
    post_events: bool = True,
    progress: ProgressCallback | None = None,
) -> Run:
    """Run `system` ("engine" or "baseline") in a fresh spawned process and return its `Run`."""
    context = multiprocessing.get_context("spawn")
    messages: multiprocessing.Queue[tuple[str, Any]] = context.Queue()
    args = (system, str(lines_path), base_url, str(state_dir), post_events, messages)
    child = context.Process(target=_child, args=args, name=f"pslab-bench-{system}")
    child.start()
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=0.5)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the {system} process died (exit code {child.exitcode}) without a result"
                    ) from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(*payload)
            elif kind == "error":
                raise RuntimeError(f"the {system} run failed: {payload}")
            else:
                return Run.from_json(payload)
    finally:
        child.join(timeout=30)


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
) -> dict[str, Any]:
    """Run both systems (and optionally the million-event input); return the JSON summary."""
    note = progress or (lambda stage, done, total: None)
    workload = build_workload(preset, seed=seed)
    with tempfile.TemporaryDirectory(prefix="pslab-bench-") as scratch:
        folder = Path(scratch)
        lines_path = folder / "events.ndjson"
        note("generate", 0, None)
        facts = WorkloadFacts.of(workload, _write_lines(workload.iter_lines(), lines_path))
        note("generate", facts.lines, facts.lines)
        systems: dict[str, Any] = {}
        with serve_in_background(EmulatorConfig(rate_limit_rps=0)) as base_url:
            for system in ("engine", "baseline"):
                seed_world(base_url, workload)
                run = run_in_child(
                    system,
                    lines_path,
                    base_url,
                    folder,
                    progress=_prefixed(note, system, facts.lines),
                )
                note(f"{system}:score", 0, None)
                systems[system] = system_summary(run, score_world(base_url, workload), facts)
            lines_path.unlink()
            million_result = _run_million(base_url, folder, note) if million else None
    return {
        "preset": preset,
        "workload": {**asdict(workload.config), **asdict(facts)},
        "rate_limit": "off; time_to_converge_at_15rps_s = api calls / 15",
        "lower_bound": facts.lower_bound(),
        "engine": systems["engine"],
        "baseline": systems["baseline"],
        "million": million_result,
    }


def _prefixed(note: ProgressCallback, prefix: str, lines: int) -> ProgressCallback:
    """Progress of one run's stages, reading an unknown total as "every line"."""

    def forward(stage: str, done: int, total: int | None) -> None:
        note(f"{prefix}:{stage}", done, lines if total is None else total)

    return forward


def _run_million(base_url: str, folder: Path, note: ProgressCallback) -> dict[str, Any]:
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
    peak = run.peak_rss_mb or 0.0
    return {
        "input": (
            f"the first {written:,} lines of the standard population ({shape.users:,} shoppers,"
            f" {shape.audiences} audiences) with {shape.rounds} rounds flipping"
            f" {shape.flip_rate:.0%}, streamed from an NDJSON file; events posting off"
        ),
        "events": written,
        "wall_s": round(run.wall_s, 1),
        "ingest_s": round(run.ingest_s, 1),
        "events_per_s": round(written / run.wall_s) if run.wall_s else None,
        "ingest_events_per_s": round(written / run.ingest_s) if run.ingest_s else None,
        "api_calls": {"total": sum(run.api_calls.values()), **run.api_calls},
        "duplicates_dropped": run.duplicates_dropped,
        "stale_skipped": run.stale_skipped,
        "drained": run.drained,
        "peak_rss_mb": round(peak, 1),
        "memory_limit_mb": MEMORY_LIMIT_MB,
        "within_memory_limit": peak <= MEMORY_LIMIT_MB,
    }


# -- judging and printing -----------------------------------------------------


def check(result: dict[str, Any]) -> list[str]:
    """The acceptance targets the result misses (empty when it meets them all)."""
    engine, baseline = result["engine"], result["baseline"]
    calls = engine["api_calls"]["total"]
    bound = result["lower_bound"]
    failures = []
    if calls > MAX_CALLS_OVER_BOUND * bound:
        failures.append(
            f"engine api calls {calls} > {MAX_CALLS_OVER_BOUND} x lower bound {bound}"
            f" ({calls / bound:.3f}x)"
        )
    if calls * MIN_SAVING_OVER_BASELINE > baseline["api_calls"]["total"]:
        failures.append(
            f"engine api calls {calls} > baseline {baseline['api_calls']['total']}"
            f" / {MIN_SAVING_OVER_BASELINE} (baseline/engine = "
            f"{baseline['api_calls']['total'] / calls:.2f})"
        )
    if engine["converged_share"] != 1.0:
        failures.append(f"engine converged_share {engine['converged_share']} != 1.0")
    if not engine["drained"]:
        failures.append("engine not drained: changes left pending or parked")
    if engine["repeated_events"] != 0:
        failures.append(f"engine repeated_events {engine['repeated_events']} != 0")
    million = result.get("million")
    if million is not None and not million["within_memory_limit"]:
        failures.append(
            f"engine peak memory on 1M events {million['peak_rss_mb']} MB > {MEMORY_LIMIT_MB} MB"
        )
    return failures


def markdown(result: dict[str, Any]) -> str:
    """The result as the Markdown table the README's Performance section shows."""
    engine, baseline = result["engine"], result["baseline"]
    workload = result["workload"]
    rows: list[tuple[str, str, str]] = []

    def row(label: str, key: str, fmt: Callable[[Any], str] = str) -> None:
        rows.append((label, fmt(engine[key]), fmt(baseline[key])))

    row("events received", "events_received", lambda v: f"{v:,}")
    for endpoint in engine["api_calls"]:
        if endpoint == "total":
            continue
        if engine["api_calls"][endpoint] or baseline["api_calls"].get(endpoint):
            rows.append(
                (
                    f"API calls: `{endpoint}`",
                    f"{engine['api_calls'][endpoint]:,}",
                    f"{baseline['api_calls'].get(endpoint, 0):,}",
                )
            )
    rows.append(
        (
            "**API calls, total**",
            f"**{engine['api_calls']['total']:,}**",
            f"**{baseline['api_calls']['total']:,}**",
        )
    )
    row("calls per membership change", "calls_per_change", lambda v: f"{v:.3f}")
    row("time to converge at 15 req/s", "time_to_converge_at_15rps_s", format_duration)
    row("memberships converged", "converged_share", format_share)
    rows.append(
        (
            "memberships correct",
            f"{engine['memberships_correct']:,} / {engine['memberships_total']:,}",
            f"{baseline['memberships_correct']:,} / {baseline['memberships_total']:,}",
        )
    )
    row("Postscript events posted", "events_posted", lambda v: f"{v:,}")
    row("repeated Postscript events", "repeated_events", lambda v: f"{v:,}")
    row("duplicates dropped", "duplicates_dropped", lambda v: f"{v:,}")
    row("stale events skipped", "stale_skipped", lambda v: f"{v:,}")
    row("wall time, rate limit off", "wall_s", lambda v: f"{v:.1f} s")
    row("peak memory (RSS)", "peak_rss_mb", lambda v: f"{v:.0f} MB")
    bound = result["lower_bound"]
    calls = engine["api_calls"]["total"]
    lines = [
        f"Workload `{result['preset']}`: {workload['users']:,} shoppers, {workload['audiences']}"
        f" audiences, {workload['lines']:,} lines delivered for {workload['changes']:,}"
        f" membership changes ({workload['memberships']:,} memberships).",
        "",
        "| | engine | Segment destination (baseline) |",
        "|---|---:|---:|",
        *(f"| {label} | {e} | {b} |" for label, e, b in rows),
        "",
        f"Lower bound (SPEC §5): **{bound:,}** calls; engine = {calls / bound:.3f} x bound,"
        f" baseline / engine = {baseline['api_calls']['total'] / calls:.2f}. The emulator's"
        " rate limit is off: time at 15 req/s is API calls / 15, wall time is what it took."
        " Peak memory is the high-water resident size of each system's own process.",
    ]
    million = result.get("million")
    if million is not None:
        verdict = "within" if million["within_memory_limit"] else "OVER"
        lines += [
            "",
            f"Engine on {million['events']:,} events ({million['input']}):"
            f" {million['events_per_s']:,} events/s end to end ({million['wall_s']:.0f} s;"
            f" ingest alone {million['ingest_events_per_s']:,} events/s),"
            f" {million['api_calls']['total']:,} API calls, peak memory"
            f" **{million['peak_rss_mb']:.0f} MB** ({verdict} the"
            f" {million['memory_limit_mb']:.0f} MB limit).",
        ]
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=False)


# -- the command --------------------------------------------------------------


def bench_command(
    preset: Annotated[
        str, typer.Option(help=f"Workload of SPEC §9: {' or '.join(PRESETS)}.")
    ] = "standard",
    million: Annotated[
        bool | None,
        typer.Option(
            "--million/--no-million",
            help="Also stream 1,000,000 events through the engine (default: on for standard).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the generated traffic.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
    check_targets: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 1 unless the engine meets the targets (calls <= 1.10 x bound and"
            " <= baseline / 2.5, converged share 1.0 and drained, no repeated events,"
            " <= 200 MB on 1M).",
        ),
    ] = False,
) -> None:
    """Benchmark the engine against the Segment destination on one seeded workload."""
    if preset not in PRESETS:
        print(
            f"pslab bench: unknown preset {preset!r}; choose {' or '.join(PRESETS)}",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    with_million = preset == "standard" if million is None else million
    err = Console(stderr=True)
    with progress_bars(err, STAGES) as bars:
        result = run_bench(preset, million=with_million, seed=seed, progress=bars)
    if as_json:
        print(to_json(result))
    else:
        print(markdown(result))
    if check_targets:
        failures = check(result)
        for failure in failures:
            print(f"pslab bench: target missed: {failure}", file=sys.stderr)
        if failures:
            raise typer.Exit(1)
        print("pslab bench: every target met", file=sys.stderr)
