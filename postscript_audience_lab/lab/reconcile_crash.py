"""`pslab reconcile` SIGKILLed mid-write and run again: are events repeated?
(docs/design/reconcile.md)

`python -m postscript_audience_lab.lab.reconcile_crash --seeds 5 --kills 3` seeds, per seed,
an in-process emulator with 200 subscribers (150 holding `vip`), then runs `pslab reconcile`
as its own process over a snapshot that adds 50 and removes 30 of them; each run is killed
right after the n-th PATCH or event Postscript answered (n drawn at random), and run again
with the same snapshot, `--kills` times, then once more to the end. Per seed it prints the
events posted per (subscriber, audience) beyond the one each change should post, the kills,
and whether the end state is the snapshot. A kill can repeat at most the events in flight:
one per concurrent writer (`Settings.workers`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.lab.reliability import emulator_in_process, quiet_hang_ups
from postscript_audience_lab.sync.settings import Settings

__all__ = ["CrashResult", "reconcile_crash_command", "run_seed"]

BENCH_KEY = "sk_test_pslab"
AUDIENCE = "vip"
SUBSCRIBERS, HOLDERS = 200, 150
NAMED = [*range(0, 120), *range(150, 200)]  # removes 120..149, adds 150..199
WRITERS = Settings.workers  # writes in flight at once, each with at most one event
POLL_S = 0.003


@dataclass
class CrashResult:
    seed: int
    kills: int
    runs: int
    events: int
    repeated_events: int
    most_after_one_kill: int  # repeats first seen in the run after a kill, at most, per kill
    wrong_memberships: int
    finished: bool


def phone(number: int) -> str:
    return f"+1555777{number:04d}"


def run_seed(seed: int, kills: int) -> CrashResult:
    chooser = random.Random(seed)
    with (
        tempfile.TemporaryDirectory(prefix="pslab-reconcile-crash-") as scratch,
        emulator_in_process(EmulatorConfig(rate_limit_rps=0)) as (url, journal),
        httpx.Client(base_url=url, timeout=60) as admin,
    ):
        folder = Path(scratch)
        admin.post("/_emulator/reset").raise_for_status()
        seeded = [
            {
                "phone_number": phone(n),
                "properties": {"Segment Audiences": [AUDIENCE] if n < HOLDERS else []},
            }
            for n in range(SUBSCRIBERS)
        ]
        admin.post("/_emulator/subscribers", json={"subscribers": seeded}).raise_for_status()
        journal.clear()
        snapshot = folder / "snapshot.csv"
        snapshot.write_text("phone\n" + "".join(f"{phone(n)}\n" for n in NAMED), encoding="utf-8")
        command = [
            *(sys.executable, "-m", "postscript_audience_lab", "reconcile"),
            *("--snapshot", str(snapshot), "--audience", AUDIENCE),
            *("--as-of", "2024-05-01T12:00:00Z", "--state", str(folder / "state.sqlite")),
            *("--base-url", url, "--rate-limit", "0", "--max-removal-share", "100%"),
        ]
        env = {**os.environ, "POSTSCRIPT_SECRET_KEY": BENCH_KEY}
        killed = runs = most = 0
        finished = False
        for attempt in range(kills + 5):
            runs += 1
            before = _repeated(admin.get("/_emulator/state").json())
            process = subprocess.Popen(  # noqa: S603 -- our own program
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
            if attempt < kills and _kill_after_writes(process, journal, chooser.randint(1, 60)):
                killed += 1
                if attempt > 0:
                    most = max(most, _repeated(admin.get("/_emulator/state").json()) - before)
                continue
            code = process.wait(timeout=240)
            if attempt > 0:  # what this run repeated of the killed run's writes
                most = max(most, _repeated(admin.get("/_emulator/state").json()) - before)
            if code == 0:
                finished = True
                break
        state = admin.get("/_emulator/state").json()
    holders = {
        str(subscriber["phone_number"])
        for subscriber in state["subscribers"]
        if AUDIENCE in _audiences(subscriber)
    }
    wrong = len(holders ^ {phone(n) for n in NAMED})
    return CrashResult(
        seed=seed,
        kills=killed,
        runs=runs,
        events=sum(1 for event in state["events"] if event.get("subscriber_id")),
        repeated_events=_repeated(state),
        most_after_one_kill=most,
        wrong_memberships=wrong,
        finished=finished,
    )


def _repeated(state: dict[str, Any]) -> int:
    """Events beyond one per subscriber: each changes once, so posts one event."""
    per_pair = Counter(str(e["subscriber_id"]) for e in state["events"] if e.get("subscriber_id"))
    return sum(count - 1 for count in per_pair.values())


def _audiences(subscriber: dict[str, Any]) -> list[str]:
    value = (subscriber.get("properties") or {}).get("Segment Audiences") or []
    return list(value) if isinstance(value, list) else []


def _kill_after_writes(
    process: subprocess.Popen[bytes], journal: list[dict[str, Any]], nth: int
) -> bool:
    """SIGKILL the run right after Postscript answered its `nth` write since it started."""
    start = len(journal)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        writes = sum(1 for entry in journal[start:] if _is_write_ok(entry))
        if writes >= nth:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(POLL_S)
    return False


def _is_write_ok(entry: dict[str, Any]) -> bool:
    return (entry["method"], entry["status"]) in (("PATCH", 200), ("POST", 202))


def reconcile_crash_command(
    seeds: Annotated[int, typer.Option(min=1)] = 5,
    kills: Annotated[int, typer.Option(min=0, help="SIGKILLs per seed.")] = 3,
    first_seed: Annotated[int, typer.Option()] = 1,
) -> None:
    """Kill `pslab reconcile` mid-write and rerun it; print repeated events per seed."""
    quiet_hang_ups()  # a killed run's half-sent request is expected, not an error
    totals: Counter[str] = Counter()
    most = 0
    for seed in range(first_seed, first_seed + seeds):
        result = run_seed(seed, kills)
        print(json.dumps(asdict(result)))
        most = max(most, result.most_after_one_kill)
        totals.update(
            {
                "kills": result.kills,
                "repeated_events": result.repeated_events,
                "wrong_memberships": result.wrong_memberships,
                "unfinished": 0 if result.finished else 1,
            }
        )
    summary = {**totals, "most_after_one_kill": most}
    print(json.dumps({"total": summary, "writers_per_run": WRITERS}))
    if totals["wrong_memberships"] or totals["unfinished"] or most > WRITERS:
        raise typer.Exit(1)  # a kill repeated more than the writes in flight, or lost one


if __name__ == "__main__":
    typer.run(reconcile_crash_command)
