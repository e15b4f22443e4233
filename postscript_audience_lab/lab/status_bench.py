"""How long `GET /status` and `GET /metrics` take on a large state file (docs/design/service.md).

`python -m postscript_audience_lab.lab.status_bench` fills a state file with `--winners`
audience changes and `--rejections` rejected events of about 1 KB (the defaults make one of
about 100 MB, the size at which 0.2.0's scans took 54 ms a poll), then times the service's
`status()` and the metrics' exposition, each `--polls` times, in process, and prints one
JSON object: the file's size, how long filling it took, and p50/p99/max milliseconds of each.

Everything the service does for a poll runs on its one event loop, between intake requests,
so a poll's time is time intake waits. Not a test: the figures depend on the machine. The
state file keeps every rejection here (the retention limits are raised for the run) so that
its size is the same whatever the limits, and the script runs unchanged against a release
before the limits existed, to compare.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.ledger import Ledger
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, Version
from postscript_audience_lab.sync.service.app import Service
from postscript_audience_lab.sync.service.intake import Credentials
from postscript_audience_lab.sync.settings import Settings

__all__ = ["measure_polls", "status_bench_command"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AUDIENCES = 8
KEEP_EVERYTHING = {"keep_rejections": 1 << 62, "keep_rejection_bytes": 1 << 62}


def _changes(count: int) -> Iterator[AudienceChange]:
    for number in range(count):
        phone = f"+1555{number // AUDIENCES:07d}"
        version = Version(T0 + timedelta(seconds=number), f"m-{number}")
        yield AudienceChange(phone, None, f"aud-{number % AUDIENCES}", None, True, version)


def _rejections(count: int) -> Iterator[Rejection]:
    for number in range(count):
        event = {"type": "track", "messageId": f"t-{number}", "properties": {"pad": "x" * 900}}
        yield Rejection("not an audience event (computation_class is not audience)", event, number)


def _settings(state: Path) -> Settings:
    known = {field.name for field in dataclasses.fields(Settings)}
    keep: dict[str, Any] = {name: v for name, v in KEEP_EVERYTHING.items() if name in known}
    return Settings(secret_key="sk_test_unused", state_path=state, **keep)  # noqa: S106


def fill(state: Path, winners: int, rejections: int) -> float:
    """Store the changes and rejections; seconds taken."""
    started = time.perf_counter()
    with Engine(_settings(state)) as engine:
        engine.ingest_changes(_changes(winners))
        engine.ingest_changes(_rejections(rejections))
    return time.perf_counter() - started


def _timed(call: Callable[[], object], polls: int) -> dict[str, float]:
    took = []
    for _ in range(polls):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    p99 = statistics.quantiles(took, n=100, method="inclusive")[98] if polls > 1 else took[0]
    return {"p50_ms": round(statistics.median(took), 3), "p99_ms": round(p99, 3)} | {
        "max_ms": round(took[-1], 3)
    }


def measure_polls(state: Path, polls: int) -> dict[str, Any]:
    """Time `Service.status()` and the metrics' exposition over the state file."""
    with Engine(_settings(state)) as engine:
        service = Service(engine, Credentials(write_key="wk_bench"), drain=False)
        return {
            "status": _timed(service.status, polls),
            "metrics": _timed(service.metrics.exposition, polls),
        }


def status_bench_command(
    winners: Annotated[int, typer.Option(min=0, help="Audience changes to store.")] = 200_000,
    rejections: Annotated[
        int, typer.Option(min=0, help="Rejected events of about 1 KB to store.")
    ] = 100_000,
    polls: Annotated[int, typer.Option(min=1, help="Polls of each to time.")] = 50,
) -> None:
    """Fill a state file, then time /status and /metrics over it."""
    with tempfile.TemporaryDirectory(prefix="pslab-status-bench-") as scratch:
        state = Path(scratch) / "state.sqlite"
        filled_s = fill(state, winners, rejections)
        with Ledger(state):  # checkpoint: the file's size is its size at rest
            pass
        result = {
            "winners": winners,
            "rejections": rejections,
            "state_file_bytes": state.stat().st_size,
            "fill_s": round(filled_s, 2),
            **measure_polls(state, polls),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    typer.run(status_bench_command)
