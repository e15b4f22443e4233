"""`pslab bench --pace real`: the engine at Postscript's real pace, measured from outside.

The emulator runs in this process at 15 requests/s per key with seeded
latency (`PUT /_emulator/faults`); each system runs in its own spawned
process, paced as a user would run it. Every figure is read back from the
emulator's request journal (what arrived, when, and what it answered), so
the engine's own counters are checked, not trusted:

- *requests/s* is (requests - 1) / (last arrival - first arrival);
- *utilisation* is that over the rate the key leaves the system
  (15, less what a competing client spends);
- *429s after 10 s* count the answers 429 to requests that arrived ten
  seconds or more after the system's first one (the settling time);
- *read → PATCH* is the engine's own measure: from the answer of the lookup
  a subscriber's PATCH is computed from, to the moment that PATCH is sent.

In the shared-key case a competing client (this process) spends 5 requests/s
of the same key on `GET /api/v2/me` for as long as the engine runs.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY, EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.emulator.segment import baseline
from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.lab.comparison import score_world, seed_world

__all__ = [
    "DEFAULT_LATENCY_MS",
    "DEFAULT_USERS",
    "PaceCase",
    "PaceResult",
    "real_pace_cases",
    "render_real_pace",
    "results_json",
    "run_real_pace",
]

API_RATE = 15.0
DEFAULT_LATENCY_MS = (150.0, 350.0)
FAST_LATENCY_MS = (0.0, 20.0)
DEFAULT_USERS = 120  # about 400 engine calls: under half a minute at 15/s
COMPETITOR_RPS = 5.0
SETTLING_S = 10.0
BASELINE_WORKERS = 4  # Segment delivers to a destination concurrently
COMPETITOR_QUERY = "client=competitor"


@dataclass(frozen=True)
class PaceCase:
    """One run: which system, what latency, what the API allows, who else spends the key."""

    name: str
    system: str  # "engine" or "baseline"
    latency_ms: tuple[float, float]
    api_rate: float = API_RATE
    competitor_rps: float = 0.0

    @property
    def available_rps(self) -> float:
        return self.api_rate - self.competitor_rps


@dataclass
class PaceResult:
    """What arrived at the emulator from one system in one case, and how it ended."""

    case: PaceCase
    api_calls: int = 0
    wall_s: float = 0.0
    requests_per_s: float = 0.0
    accepted_per_s: float = 0.0  # answered other than 429
    utilisation: float = 0.0  # requests_per_s / available_rps
    rate_limited: int = 0
    rate_limited_after_settling: int = 0
    calls_after_settling: int = 0
    competitor_calls: int = 0  # while the system ran (first to last arrival)
    competitor_rate_limited: int = 0
    settled_rate: float | None = None
    read_to_patch_s: dict[str, float] = field(default_factory=dict)
    converged_share: float = 0.0
    drained: bool = False
    lower_bound: int | None = None
    exit_error: str | None = None

    @property
    def rate_limited_share_after_settling(self) -> float:
        calls = self.calls_after_settling
        return self.rate_limited_after_settling / calls if calls else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate_limited_share_after_settling"] = round(self.rate_limited_share_after_settling, 4)
        return data


def real_pace_cases(latency_ms: tuple[float, float], *, slow_api: bool) -> list[PaceCase]:
    """The standard cases; `slow_api` adds the API allowing 2 requests/s (minutes more)."""
    cases = [
        PaceCase(f"{_ms(latency_ms)} latency", "engine", latency_ms),
        PaceCase(f"{_ms(latency_ms)} latency", "baseline", latency_ms),
        PaceCase(f"{_ms(FAST_LATENCY_MS)} latency", "engine", FAST_LATENCY_MS),
        PaceCase(
            f"shared key: another client at {COMPETITOR_RPS:g}/s",
            "engine",
            latency_ms,
            competitor_rps=COMPETITOR_RPS,
        ),
    ]
    if slow_api:
        cases.append(PaceCase("the API allows 2/s, engine set to 15", "engine", latency_ms, 2.0))
    return cases


def _ms(window: tuple[float, float]) -> str:
    return f"{window[0]:g}–{window[1]:g} ms"


def run_real_pace(
    cases: list[PaceCase],
    *,
    users: int = DEFAULT_USERS,
    seed: int = 1,
    note: Callable[[str], None] = lambda message: None,
) -> list[PaceResult]:
    """Run each case on one seeded workload, each against a freshly seeded emulator."""
    workload = build_workload("quick", users=users, seed=seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="pslab-real-pace-") as scratch:
        lines_path = Path(scratch) / "events.ndjson"
        lines_path.write_text("\n".join(workload.iter_lines()) + "\n", encoding="utf-8")
        context = multiprocessing.get_context("spawn")
        for number, case in enumerate(cases):
            note(f"{case.system}, {case.name}")
            config = EmulatorConfig(rate_limit_rps=case.api_rate, journal_size=1_000_000)
            with serve_in_background(config) as base_url:
                seed_world(base_url, workload)
                faults = {"latency_ms": list(case.latency_ms), "seed": seed}
                httpx.put(f"{base_url}/_emulator/faults", json=faults).raise_for_status()
                state = Path(scratch) / f"state-{number}.sqlite"
                with (
                    ProcessPoolExecutor(1, mp_context=context) as pool,
                    _competitor(base_url, case.competitor_rps),
                ):
                    started = time.monotonic()
                    job = pool.submit(_run_system, case, str(lines_path), base_url, str(state))
                    own = job.result()
                    wall = time.monotonic() - started
                httpx.put(f"{base_url}/_emulator/faults", json={}).raise_for_status()
                journal = httpx.get(f"{base_url}/_emulator/requests", timeout=60).json()
                score = score_world(base_url, workload)
            result = _from_journal(case, journal["requests"])
            result.wall_s = round(wall, 1)
            result.converged_share = round(score.converged_share, 4)
            result.drained = bool(own.get("drained"))
            result.settled_rate = own.get("settled_rate") if case.competitor_rps else None
            result.read_to_patch_s = own.get("read_to_patch_s") or {}
            result.lower_bound = own.get("lower_bound")
            result.exit_error = own.get("error")
            results.append(result)
    return results


def _run_system(case: PaceCase, lines_path: str, base_url: str, state: str) -> dict[str, Any]:
    """In a child process: one system over the file, as a user runs it at 15 requests/s."""
    from postscript_audience_lab.sync.engine import Engine  # the child imports what it runs
    from postscript_audience_lab.sync.settings import Settings

    with open(lines_path, encoding="utf-8") as lines:
        if case.system == "baseline":
            report = baseline.run_baseline(
                lines, base_url, DEFAULT_SECRET_KEY, workers=BASELINE_WORKERS
            )
            return {"drained": report.failed == 0}
        settings = Settings(
            base_url=base_url,
            secret_key=DEFAULT_SECRET_KEY,
            state_path=Path(state),
            rate_limit=API_RATE,
        )
        try:
            with Engine(settings) as engine:
                engine.ingest(lines)
                drained = anyio.run(engine.drain).as_dict()
        except Exception as error:  # reported as the case's outcome: "exits on 429s" is one
            return {"drained": False, "error": f"{type(error).__name__}: {error}"}
    return {**drained, "drained": drained["pending"] == 0 and drained["parked"] == 0}


@contextmanager
def _competitor(base_url: str, rps: float) -> Iterator[None]:
    """Another client spending `rps` requests/s of the same key, strictly paced."""
    if rps <= 0:
        yield
        return
    stop = threading.Event()

    async def spend() -> None:
        headers = {"Authorization": f"Bearer {DEFAULT_SECRET_KEY}"}
        async with (
            httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client,
            anyio.create_task_group() as tasks,
        ):
            next_at = time.monotonic()
            while not stop.is_set():
                tasks.start_soon(client.get, f"/api/v2/me?{COMPETITOR_QUERY}")
                next_at += 1 / rps
                await anyio.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=anyio.run, args=(spend,), name="pslab-competitor")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _from_journal(case: PaceCase, entries: list[dict[str, Any]]) -> PaceResult:
    result = PaceResult(case)
    own = [entry for entry in entries if entry.get("query") != COMPETITOR_QUERY]
    if not own:
        return result
    times = [datetime.fromisoformat(entry["time"]).timestamp() for entry in own]
    first, span = times[0], times[-1] - times[0]
    other = [
        entry
        for entry in entries
        if entry.get("query") == COMPETITOR_QUERY
        and first <= datetime.fromisoformat(entry["time"]).timestamp() <= times[-1]
    ]
    result.competitor_calls = len(other)
    result.competitor_rate_limited = sum(1 for entry in other if entry["status"] == 429)
    accepted = [entry for entry in own if entry["status"] != 429]
    result.api_calls = len(own)
    result.rate_limited = len(own) - len(accepted)
    if span > 0:
        result.requests_per_s = round((len(own) - 1) / span, 2)
        result.accepted_per_s = round((len(accepted) - 1) / span, 2)
        result.utilisation = round(result.requests_per_s / case.available_rps, 4)
    late = [entry for entry, at in zip(own, times, strict=True) if at - first >= SETTLING_S]
    result.calls_after_settling = len(late)
    result.rate_limited_after_settling = sum(1 for entry in late if entry["status"] == 429)
    return result


def render_real_pace(results: list[PaceResult], *, users: int, command: str) -> str:
    """The Markdown table the README's "Performance" section shows."""
    lines = [
        f"`{command}`: the `quick` population cut to {users} shoppers; the emulator at"
        f" {API_RATE:g} requests/s per key.",
        "",
        "| system | case | API calls | wall | requests/s | utilisation | 429s (after 10 s)"
        " | settled rate | other client's 429s | read → PATCH p50 / p99 / max | converged |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        case = result.case
        ages = result.read_to_patch_s
        age = f"{ages['p50']:.2f} / {ages['p99']:.2f} / {ages['max']:.2f} s" if ages else "–"
        settled = f"{result.settled_rate:.1f}/s" if result.settled_rate is not None else "–"
        share = result.rate_limited_share_after_settling
        other = (
            f"{result.competitor_rate_limited} of {result.competitor_calls}"
            if case.competitor_rps
            else "–"
        )
        converged = f"{result.converged_share:.1%}" + ("" if result.drained else " (not drained)")
        lines.append(
            f"| {case.system} | {case.name} | {result.api_calls:,} | {result.wall_s:.1f} s"
            f" | {result.requests_per_s:.2f} | {result.utilisation:.1%} of"
            f" {case.available_rps:g}/s | {result.rate_limited}"
            f" ({result.rate_limited_after_settling}, {share:.2%})"
            f" | {settled} | {other} | {age} | {converged} |"
        )
    return "\n".join(lines)


def results_json(results: list[PaceResult]) -> str:
    return json.dumps([result.to_json() for result in results])
