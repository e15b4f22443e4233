"""`pslab generate`: Engage traffic as NDJSON, the subscribers to seed and the expected result."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import Progress

from postscript_audience_lab.emulator.segment.workload import PRESETS, build_workload

__all__ = ["generate_command"]

_RATE = {"min": 0.0, "max": 1.0}


def _write_json(path: Path, payload: dict[str, Any], option: str) -> None:
    try:
        path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    except OSError as error:
        raise typer.BadParameter(
            f"cannot write {path}: {error.strerror}", param_hint=option
        ) from None


def _open_out(out: Path | None) -> TextIO:
    if out is None or str(out) == "-":
        return sys.stdout
    try:
        return out.open("w", encoding="utf-8", newline="\n")
    except OSError as error:
        raise typer.BadParameter(
            f"cannot write {out}: {error.strerror}", param_hint="--out"
        ) from None


def generate_command(
    preset: Annotated[
        str, typer.Option(help=f"Workload (docs/design/benchmark.md): {' or '.join(PRESETS)}.")
    ] = "standard",
    users: Annotated[
        int | None,
        typer.Option(
            help="Shoppers (half phone+email, a quarter each phone-only / email-only).", min=1
        ),
    ] = None,
    audiences: Annotated[
        int | None, typer.Option(help="Audiences (every fourth is a journey step).", min=1)
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="Recomputations after the backfill.", min=0)
    ] = None,
    flip_rate: Annotated[
        float | None, typer.Option(help="Share of memberships that flip per round.", **_RATE)
    ] = None,
    duplicate_rate: Annotated[
        float | None, typer.Option(help="Share of events delivered twice.", **_RATE)
    ] = None,
    shuffle_window: Annotated[
        int | None, typer.Option(help="Events shuffled together (0 or 1 = in order).", min=0)
    ] = None,
    late_rate: Annotated[
        float | None, typer.Option(help="Share of events re-delivered 1-10 windows later.", **_RATE)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help='Events per {"batch":[…]} line (0 = one event per line).', min=0),
    ] = None,
    unseeded_rate: Annotated[
        float | None,
        typer.Option(
            help="Share of shoppers left out of the seed (their events find no subscriber).",
            **_RATE,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed; the same seed writes byte-identical files.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="NDJSON events as delivered (default: standard output).")
    ] = None,
    subscribers_out: Annotated[
        Path | None,
        typer.Option(help="Subscribers to seed: the body of POST /_emulator/subscribers."),
    ] = None,
    expect_out: Annotated[
        Path | None, typer.Option(help='Expected final membership: {"memberships":[…]}.')
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Write Engage audience events with Segment's delivery faults, plus their ground truth."""
    if preset not in PRESETS:
        raise typer.BadParameter(
            f"unknown preset {preset!r}; use {' or '.join(PRESETS)}", param_hint="--preset"
        )
    started = time.perf_counter()
    workload = build_workload(
        preset,
        users=users,
        audiences=audiences,
        rounds=rounds,
        flip_rate=flip_rate,
        duplicate_rate=duplicate_rate,
        shuffle_window=shuffle_window,
        late_rate=late_rate,
        batch_size=batch_size,
        unseeded_rate=unseeded_rate,
        seed=seed,
    )
    if subscribers_out is not None:
        _write_json(subscribers_out, {"subscribers": workload.subscribers}, "--subscribers-out")
    if expect_out is not None:
        _write_json(expect_out, {"memberships": workload.expected}, "--expect-out")

    stream = _open_out(out)
    lines = 0
    config = workload.config
    estimate = workload.truth.events * (1 + config.duplicate_rate + config.late_rate)
    show = not as_json and stream is not sys.stdout and sys.stderr.isatty()
    progress = Progress(transient=True, disable=not show, console=Console(stderr=True))
    try:
        with progress:
            task = progress.add_task("writing events", total=estimate)
            for line in workload.iter_lines():
                stream.write(line + "\n")
                lines += 1
                if lines % 1000 == 0:
                    progress.update(task, completed=lines)
    finally:
        if stream is not sys.stdout:
            stream.close()
        else:
            stream.flush()

    summary = {
        "preset": preset,
        "config": dataclasses.asdict(config),
        "lines": lines,
        "events": workload.truth.events,
        "subscribers": len(workload.subscribers),
        "memberships": len(workload.expected),
        "expected_postscript_events": workload.expected_event_count,
        "seconds": round(time.perf_counter() - started, 3),
    }
    report = sys.stderr if stream is sys.stdout else sys.stdout
    if as_json:
        print(json.dumps(summary), file=report)
    else:
        print(
            f"wrote {lines} lines ({summary['events']} distinct events) for "
            f"{summary['subscribers']} subscribers; {summary['memberships']} expected memberships, "
            f"{summary['expected_postscript_events']} Postscript events a correct sync posts "
            f"({summary['seconds']} s)",
            file=report,
        )
