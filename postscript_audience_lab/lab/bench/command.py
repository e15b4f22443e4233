"""`pslab bench`: the command."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from postscript_audience_lab.emulator.segment.workload import PRESETS
from postscript_audience_lab.lab.bench.real_pace import (
    DEFAULT_USERS,
    real_pace_cases,
    render_real_pace,
    results_json,
    run_real_pace,
)
from postscript_audience_lab.lab.bench.run import STAGES, run_bench
from postscript_audience_lab.lab.bench.targets import check
from postscript_audience_lab.lab.render import markdown, progress_bars

__all__ = ["bench_command"]


def bench_command(
    preset: Annotated[
        str, typer.Option(help=f"Workload (docs/design/benchmark.md): {' or '.join(PRESETS)}.")
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
    pace: Annotated[
        str,
        typer.Option(
            help="calls: count calls with the rate limit off (default); real: run at"
            " Postscript's pace (15 requests/s, seeded latency) and measure time (minutes).",
        ),
    ] = "calls",
    latency_ms: Annotated[
        str,
        typer.Option(help="With --pace real: the emulator's latency window, LOW-HIGH ms."),
    ] = "150-350",
    users: Annotated[
        int,
        typer.Option(min=1, max=5000, help="With --pace real: shoppers in the workload."),
    ] = DEFAULT_USERS,
    slow_api: Annotated[
        bool,
        typer.Option(
            "--slow-api",
            help="With --pace real: also run with the API allowing only 2 requests/s.",
        ),
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
    if pace not in ("calls", "real"):
        print(f"pslab bench: unknown pace {pace!r}; choose calls or real", file=sys.stderr)
        raise typer.Exit(2)
    if pace == "real":
        _real_pace(latency_ms, users=users, seed=seed, slow_api=slow_api, as_json=as_json)
        return
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
        print(json.dumps(result.to_json()))
    else:
        print(markdown(result))
    if check_targets:
        failures = check(result)
        for failure in failures:
            print(f"pslab bench: target missed: {failure}", file=sys.stderr)
        if failures:
            raise typer.Exit(1)
        print("pslab bench: every target met", file=sys.stderr)


def _real_pace(
    latency_ms: str, *, users: int, seed: int | None, slow_api: bool, as_json: bool
) -> None:
    window = _latency_window(latency_ms)
    err = Console(stderr=True)
    cases = real_pace_cases(window, slow_api=slow_api)
    results = run_real_pace(
        cases, users=users, seed=seed or 1, note=lambda what: err.print(f"running {what}")
    )
    if as_json:
        print(results_json(results))
        return
    command = f"pslab bench --pace real --latency-ms {latency_ms}"
    command += (f" --users {users}" if users != DEFAULT_USERS else "") + (
        " --slow-api" if slow_api else ""
    )
    print(render_real_pace(results, users=users, command=command))


def _latency_window(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        window = (float(low), float(high or low))
    except ValueError:
        window = (-1.0, -1.0)
    if not 0 <= window[0] <= window[1] <= 60_000:
        print(
            f"pslab bench: --latency-ms {text!r} is not LOW-HIGH milliseconds (e.g. 150-350)",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    return window
