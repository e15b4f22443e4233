"""`pslab bench`: the command."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from emulator.segment.workload import PRESETS
from lab.bench.run import STAGES, run_bench
from lab.bench.targets import check
from lab.render import markdown, progress_bars

__all__ = ["bench_command"]


def bench_command(
    preset: Annotated[
        str, typer.Option(help=f"Workload (docs/design.md §9): {' or '.join(PRESETS)}.")
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
