"""How much memory and time `pslab reconcile --dry-run` takes on a large snapshot
(docs/design/reconcile.md).

`python -m postscript_audience_lab.lab.reconcile_bench --rows 2800000` writes a CSV snapshot
of that many rows (phone and email, about 36 bytes each: 100 MB for 2.8 million), seeds an
in-process emulator with `--subscribers` of them holding the audience, runs
`pslab reconcile --dry-run` on it as its own process and prints the process's peak resident
memory (the kernel's `ru_maxrss` for that child) and its wall time. `--rejected` makes every
row one the reader rejects (a phone that cannot be one), with `--rejects-out` streaming them
to a file. Not a test: the figures
depend on the machine; `--check` holds the peak to `TARGET_PEAK_MB`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background

__all__ = ["ReconcileFootprint", "measure_reconcile", "reconcile_bench_command", "write_snapshot"]

TARGET_PEAK_MB = 500
BENCH_KEY = "sk_test_pslab"  # the emulator's default key: nothing real
AUDIENCE = "vip"
SEED_BATCH = 1000  # subscribers per admin seed request


@dataclass(frozen=True)
class ReconcileFootprint:
    rows: int
    snapshot_mb: float
    subscribers: int
    rejected: bool
    peak_rss_mb: float
    seconds: float
    exit_code: int


def phone(number: int) -> str:
    return f"+1555{number:07d}"


def write_snapshot(path: Path, rows: int, *, rejected: bool = False) -> None:
    """`rows` members of AUDIENCE by phone and email, or, `rejected`, as many rows whose
    phone no number can be."""
    with path.open("w", encoding="utf-8") as out:
        out.write("audience_key,phone,email\n")
        for number in range(rows):
            if rejected:
                out.write(f"{AUDIENCE},not-a-phone-{number:09d},\n")
            else:
                out.write(f"{AUDIENCE},{phone(number)},m{number}@example.com\n")


def measure_reconcile(
    rows: int, subscribers: int, *, rejected: bool = False, workdir: Path | None = None
) -> ReconcileFootprint:
    """Run `pslab reconcile --dry-run` once over a generated snapshot; its peak RSS and time."""
    with tempfile.TemporaryDirectory(prefix="pslab-reconcile-bench-", dir=workdir) as scratch:
        folder = Path(scratch)
        snapshot = folder / "snapshot.csv"
        write_snapshot(snapshot, rows, rejected=rejected)
        with serve_in_background(EmulatorConfig(rate_limit_rps=0)) as url:
            _seed(url, subscribers)
            command = [
                sys.executable,
                "-m",
                "postscript_audience_lab",
                "reconcile",
                "--snapshot",
                str(snapshot),
                "--as-of",
                "2024-05-01T12:00:00Z",
                "--audience",
                AUDIENCE,
                "--state",
                str(folder / "state.sqlite"),
                "--base-url",
                url,
                "--rate-limit",
                "0",
                "--dry-run",
                "--json",
            ]
            if rejected:
                command += ["--rejects-out", str(folder / "rejects.ndjson")]
            started = time.perf_counter()
            process = subprocess.Popen(  # noqa: S603 -- our own program
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "POSTSCRIPT_SECRET_KEY": BENCH_KEY},
            )
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        return ReconcileFootprint(
            rows=rows,
            snapshot_mb=round(snapshot.stat().st_size / 1e6, 1),
            subscribers=subscribers,
            rejected=rejected,
            peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: kibibytes
            seconds=round(seconds, 1),
            exit_code=process.returncode,
        )


def _seed(url: str, subscribers: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as admin:
        admin.post("/_emulator/reset").raise_for_status()
        for start in range(0, subscribers, SEED_BATCH):
            batch = [
                {"phone_number": phone(number), "properties": {"Segment Audiences": [AUDIENCE]}}
                for number in range(start, min(subscribers, start + SEED_BATCH))
            ]
            admin.post("/_emulator/subscribers", json={"subscribers": batch}).raise_for_status()


def reconcile_bench_command(
    rows: Annotated[int, typer.Option(min=1, help="Snapshot rows to generate.")] = 2_800_000,
    subscribers: Annotated[
        int, typer.Option(min=0, help="Subscribers in the shop, each holding the audience.")
    ] = 2000,
    rejected: Annotated[
        bool, typer.Option("--rejected", help="Make every row one the reader rejects.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help=f"Exit 1 at a peak over {TARGET_PEAK_MB} MB.")
    ] = False,
) -> None:
    """Peak RSS and wall time of `pslab reconcile --dry-run` on a generated snapshot."""
    result = measure_reconcile(rows, subscribers, rejected=rejected)
    if as_json:
        print(json.dumps(asdict(result)))
    else:
        kind = "rejected rows" if rejected else "rows"
        print(
            f"pslab reconcile --dry-run: {result.rows:,} {kind} ({result.snapshot_mb} MB), "
            f"{result.subscribers:,} subscribers: peak RSS {result.peak_rss_mb} MB, "
            f"{result.seconds} s, exit {result.exit_code}"
        )
    if check and result.peak_rss_mb > TARGET_PEAK_MB:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(reconcile_bench_command)
