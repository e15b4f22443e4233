"""The crash and fault suite: `pslab sync` killed and faulted on purpose, then checked.

For each seed: a fresh emulator (in-process; a `pslab emulator --state FILE`
process for the emulator-kill kind), a small `quick` workload of its own
seed seeded into it, then `pslab sync` as a subprocess over the workload's
lines (plus two lines that must be rejected) with a fresh state file. Each
run is SIGKILLed at a planned point:

- `random`  a random delay after the engine opened its state file;
- `ingest`  a short delay into the ingest of a large input (older versions
            of the same memberships, then the real lines);
- `lookup`  right after the n-th `GET /api/v2/subscribers` is journaled;
- `patch`   right after the n-th PATCH answered 200, before its events
            (the emulator's latency fault leaves a window);
- `event`   right after the n-th event POST answered 202, before the engine
            records it;
- `commit`  inside a ledger commit: the suite takes the state file's SQLite
            write lock, waits until a PATCH or event is answered (its writer
            now waits on that lock), then kills.

A killed run is followed by another on the same state file: with the same
input when the killed one had not reached Postscript (Segment re-delivers what
was never acknowledged), else with empty input, until one exits 0 with
nothing pending or parked. In fault mode the emulator also fails on purpose
(`FAULT_KINDS`). Then the world is checked:

- wrong memberships: an expected (subscriber, audience) not as the ground
  truth says (docs/design.md §4.1), as `lab.comparison.score_world` scores it;
- lost: changes left pending or parked at the end, plus memberships whose
  posted events do not mirror the change (per pair, in posting order from
  "not a member", the events must end in the expected state);
- repeated events (`lab.comparison.count_repeated`), held to the number of
  kills of that seed;
- tracebacks in any `pslab sync` stderr, runs that failed without a fault to
  explain it (or with more than a one-line message), runs that never finished,
  and journaled 5xx answers the emulator gave outside an injected fault.

`python -m postscript_audience_lab.lab.reliability --crashes 500 --json` runs seeds
(alternating crash and fault mode) until at least that many kills happened; exit status 1 when
any of those figures is not zero or a run never finished.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import closing, contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import httpx
import typer
from rich.console import Console
from rich.table import Table

from postscript_audience_lab.emulator.postscript.app import create_app
from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY, EmulatorConfig
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.faults import ConnectionDropped
from postscript_audience_lab.emulator.postscript.serve import serve_app_in_background
from postscript_audience_lab.emulator.segment.workload import Workload, build_workload
from postscript_audience_lab.lab.comparison import count_repeated, index_subscribers
from postscript_audience_lab.sync.settings import Settings

__all__ = [
    "FAULT_KINDS",
    "KILL_POINTS",
    "MUST_BE_ZERO",
    "Attempt",
    "KillPlan",
    "SeedPlan",
    "SeedResult",
    "SuiteConfig",
    "SuiteResult",
    "main",
    "plan_seeds",
    "reliability_command",
    "render_table",
    "run_seed",
    "run_seeds",
    "run_suite",
]

KillPoint = Literal["random", "ingest", "lookup", "patch", "event", "commit"]
KILL_POINTS: tuple[KillPoint, ...] = ("random", "ingest", "lookup", "patch", "event", "commit")
FAULT_KINDS = (
    "errors",  # 10-50% of calls answer 500/502/503/429
    "timeouts",  # calls held then dropped (timeout_rate, short timeout_ms)
    "rate_limit",  # 429 storms: the emulator's bucket far below the unpaced engine
    "mixed",  # errors, timeouts and latency together
    "wrong_key",  # one run mid-way with a wrong key: exit 1, one line
    "refused_patch",  # a subscriber already holding 50 custom properties: PATCH is a 400
    "injected_404",  # 404 answers (the emulator cannot delete a subscriber)
    "emulator_kill",  # `pslab emulator --state FILE` SIGKILLed mid-write, restarted
)
# What a correct engine leaves at zero. A repeated event is explained by a kill when the run
# that posted the copy before it was killed (or its emulator was), and that kill explains at
# most one repeat per (subscriber, audience) and at most one per concurrent writer.
MUST_BE_ZERO = (
    "lost",
    "wrong_memberships",
    "unexplained_repeats",
    "tracebacks",
    "server_errors_outside_faults",
    "unexplained_failures",
    "never_finished",
)

PSLAB = (sys.executable, "-m", "postscript_audience_lab")
SECRET_KEY = DEFAULT_SECRET_KEY
WRONG_KEY = "sk_reliability_not_the_key"  # a deliberately wrong key
TRACEBACK = "Traceback (most recent call last)"
AUDIENCES_PROPERTY = "Segment Audiences"
ENTERED = "Segment_Audience_Entered"
EXITED = "Segment_Audience_Exited"
LIST_PATH = "/api/v2/subscribers"
ME_PATH = "/api/v2/me"
EVENTS_PATH = "/api/v2/events"
CUSTOM_PROPERTY_LIMIT = 50
PADDING_COPIES = 40  # older versions per real line in the large input of `ingest` kills
ATTEMPT_TIMEOUT_S = 240.0  # a run still going after this is killed and counted as hung
FINISH_ATTEMPTS = 12  # runs after the planned kills to reach exit 0; more is "never finished"
POLL_S = 0.003
# A `pslab sync` makes no call sooner than this after it starts: its imports alone take
# longer (0.33-0.36 s from spawn to its first connection on a quiet 2-core machine, with
# bytecode cached). A killed run's last calls can be stored up to this long after the
# next run started.
STARTUP_S = 0.2
# subscribers one `pslab sync` writes at a time: each can have one event in flight at a kill
WRITERS: int = next(f.default for f in fields(Settings) if f.name == "workers")  # type: ignore[assignment]
_KILLED_AT: dict[int, float] = {}  # pid -> time.time() of its SIGKILL
BAD_LINES = (
    '{"type": "identify", "messageId": "reliability-not-closed"',
    json.dumps(
        {
            "type": "identify",
            "messageId": "reliability-no-audience",
            "timestamp": "2024-05-01T00:00:00Z",
            "traits": {"vip": True, "phone": "+15552000001"},
        }
    ),
)


@dataclass(frozen=True)
class KillPlan:
    """Where one `pslab sync` run is killed: `nth` call of its kind, or `delay_s` seconds in."""

    point: KillPoint
    nth: int = 1
    delay_s: float = 0.0


@dataclass(frozen=True)
class SeedPlan:
    """One seed of the suite: crash mode (`kind == "crash"`) or a fault kind."""

    seed: int
    kind: str = "crash"
    kills: int = 8  # planned SIGKILLs of pslab sync (emulator kills for `emulator_kill`)
    users: tuple[int, int] = (60, 120)
    audiences: tuple[int, int] = (3, 4)
    error_rate: float | None = None  # `errors` kind: this rate instead of one drawn (10-50%)

    @property
    def mode(self) -> str:
        return "crash" if self.kind == "crash" else "fault"


@dataclass
class Attempt:
    """One `pslab sync` process."""

    number: int
    plan: KillPlan | None
    input_events: int
    key: str = "right"
    killed: bool = False
    hung: bool = False
    returncode: int | None = None
    stderr: str = ""
    api_calls: int = 0  # calls the emulator journaled while this run was alive
    journal_span: tuple[int, int] = (0, 0)  # those calls: a slice of the seed's journal
    started_at: float = 0.0  # time.time()
    wall_s: float = 0.0
    killed_at: float | None = None  # time.time() of the SIGKILL
    emulator_kills: int = 0  # times the emulator was killed while this run went on
    rejects: list[dict[str, Any]] = field(default_factory=list)  # its --rejects-out
    summary: dict[str, Any] | None = None

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr

    @property
    def one_line_failure(self) -> bool:
        lines = self.stderr.strip().splitlines()
        return self.returncode == 1 and len(lines) == 1 and lines[0].startswith("pslab sync: ")

    @property
    def drained(self) -> bool:
        summary = self.summary or {}
        return self.returncode == 0 and summary.get("pending") == 0 and summary.get("parked") == 0

    def brief(self) -> dict[str, Any]:
        summary = self.summary or {}
        return {
            "attempt": self.number,
            "kill": None if self.plan is None else asdict(self.plan),
            "killed": self.killed,
            "key": self.key,
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 2),
            "input_events": self.input_events,
            "api_calls": self.api_calls,
            "summary": {
                name: summary.get(name)
                for name in ("received", "applied", "pending", "parked", "resumed", "refused")
            },
            "stderr": self.stderr.strip().splitlines()[-3:],
        }


@dataclass
class SeedResult:
    """What one seed did and what the checks found."""

    seed: int
    kind: str
    users: int = 0
    audiences: int = 0
    events_delivered: int = 0
    processes: int = 0
    kills: Counter[str] = field(default_factory=Counter)  # pslab sync SIGKILLs by point
    emulator_kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)  # by kind, from the request journal
    memberships: int = 0
    wrong_memberships: int = 0
    refused_memberships: int = 0  # pairs of a subscriber whose PATCH Postscript refused (400)
    unsettled: int = 0  # pending + parked after the last run
    missing_events: int = 0  # memberships whose posted events do not mirror the change
    repeated_events: int = 0
    unexplained_repeats: int = 0  # repeats no kill explains (see MUST_BE_ZERO)
    kills_repeating_several: int = 0  # kills after which more than one event was repeated
    refusals_unreported: int = 0  # 400s met by a run that was then killed: no --rejects-out
    rejected_inputs: int = 0  # sum of `rejected` over the summaries
    refused: int = 0  # sum of `refused` over the summaries
    tracebacks: int = 0
    unexplained_failures: int = 0
    server_errors_outside_faults: int = 0
    abandoned_calls: int = 0  # calls the emulator saw their client hang up on (a kill)
    emulator_tracebacks: int = 0  # tracebacks the emulator logged (client hang-ups)
    finished: bool = False
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "crash" if self.kind == "crash" else "fault"

    @property
    def crashes(self) -> int:
        return sum(self.kills.values()) + self.emulator_kills

    @property
    def lost(self) -> int:
        return self.unsettled + self.missing_events

    @property
    def repeats_over_kills(self) -> int:
        """Repeated events beyond one per kill: concurrent writers can each repeat one."""
        return max(0, self.repeated_events - self.crashes)

    @property
    def never_finished(self) -> int:
        return 0 if self.finished else 1

    def figures(self) -> dict[str, int]:
        return {
            "seeds": 1,
            "sync_processes": self.processes,
            "events_delivered": self.events_delivered,
            "crashes": self.crashes,
            "emulator_kills": self.emulator_kills,
            **{f"kills_{point}": self.kills.get(point, 0) for point in KILL_POINTS},
            **{f"fault_{kind}": count for kind, count in self.faults.items()},
            "memberships": self.memberships,
            "lost": self.lost,
            "wrong_memberships": self.wrong_memberships,
            "repeated_events": self.repeated_events,
            "unexplained_repeats": self.unexplained_repeats,
            "repeats_over_kills": self.repeats_over_kills,
            "kills_repeating_several": self.kills_repeating_several,
            "refusals_unreported": self.refusals_unreported,
            "rejected_inputs": self.rejected_inputs,
            "refused": self.refused,
            "refused_memberships": self.refused_memberships,
            "tracebacks": self.tracebacks,
            "unexplained_failures": self.unexplained_failures,
            "server_errors_outside_faults": self.server_errors_outside_faults,
            "never_finished": self.never_finished,
            "abandoned_calls": self.abandoned_calls,
            "emulator_tracebacks": self.emulator_tracebacks,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "kind": self.kind,
            "users": self.users,
            "audiences": self.audiences,
            "wall_s": round(self.wall_s, 1),
            "figures": self.figures(),
            "problems": self.problems,
            "attempts": self.attempts if self.problems else [],
        }


# -- the world: one emulator per seed --------------------------------------------------


class World:
    """The emulator of one seed, through its admin surface; the journal survives restarts.

    With `tee` (an in-process emulator's journal entries, as it appends them) the journal
    is read from memory: `GET /_emulator/requests` takes ~10 ms with a few hundred entries,
    and polling it every few milliseconds would starve the emulator it shares a GIL with.
    """

    def __init__(self, base_url: str, tee: list[dict[str, Any]] | None = None) -> None:
        self.base_url = base_url
        self.admin = httpx.Client(base_url=base_url, timeout=60)
        self.faults: dict[str, Any] = {}
        self.earlier: list[dict[str, Any]] = []  # journal of emulator lives before a restart
        self.tee = tee
        self.poll_s = POLL_S if tee is not None else 0.01

    def close(self) -> None:
        self.admin.close()

    def reconnect(self, base_url: str) -> None:
        """A restarted emulator: new connections (the old ones died with it)."""
        self.admin.close()
        self.base_url = base_url
        self.admin = httpx.Client(base_url=base_url, timeout=60)

    def journal(self) -> list[dict[str, Any]]:
        """Every API call the emulator answered since `seed`, oldest first."""
        if self.tee is not None:
            return list(self.tee)
        response = self.admin.get("/_emulator/requests")
        response.raise_for_status()
        return [*self.earlier, *response.json()["requests"]]

    def state(self) -> dict[str, Any]:
        response = self.admin.get("/_emulator/state")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def seed(self, subscribers: list[dict[str, Any]]) -> None:
        self.admin.post("/_emulator/reset").raise_for_status()
        if self.tee is not None:
            self.tee.clear()
        body = {"subscribers": subscribers}
        self.admin.post("/_emulator/subscribers", json=body).raise_for_status()

    def set_faults(self, faults: Mapping[str, Any]) -> None:
        self.faults = dict(faults)
        self.admin.put("/_emulator/faults", json=self.faults).raise_for_status()


class EmulatorProcess:
    """`pslab emulator --state FILE` as its own process, so it can be SIGKILLed and restarted."""

    def __init__(self, state_path: Path, log_path: Path) -> None:
        self.state_path = state_path
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self._log: TextIO | None = None

    def start(self) -> str:
        self._log = self.log_path.open("a", encoding="utf-8")
        for _ in range(50):  # the port of a killed emulator can take a moment to be free
            command = [
                *PSLAB,
                "emulator",
                "--port",
                str(self.port),
                "--state",
                str(self.state_path),
                "--rate-limit",
                "0",
            ]
            process = subprocess.Popen(  # noqa: S603 -- our own program
                command, stdout=subprocess.PIPE, stderr=self._log, text=True
            )
            assert process.stdout is not None
            line = process.stdout.readline()
            if "listening on" in line:
                self.process = process
                url = line.split("listening on ", 1)[1].split()[0]
                self.port = int(url.rsplit(":", 1)[1])
                return url
            process.wait(timeout=30)
            time.sleep(0.1)
        raise RuntimeError(f"the emulator would not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the emulator dies wherever it is (mid-write, for the state file's test)."""
        self._end(graceful=False)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after 30 s."""
        self._end(graceful=True)

    def _end(self, *, graceful: bool) -> None:
        if self.process is not None:
            if graceful:
                self.process.terminate()
                with suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
            self.process.kill()  # no-op on a process that has exited
            self.process.wait(timeout=30)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""


class _ClientHangUps(logging.Filter):
    """Counts (and keeps off the console) what uvicorn logs when a killed client hangs up.

    A timeout fault's dropped connection is kept off the console too, uncounted: the
    emulator's own server does the same (`emulator.postscript.serve`).
    """

    count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ConnectionDropped):
            return False
        if error is not None and type(error).__name__ == "ClientDisconnect":
            _ClientHangUps.count += 1
            return False
        return True


def _quiet_hang_ups() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _ClientHangUps) for existing in logger.filters):
        logger.addFilter(_ClientHangUps())


# -- one seed -------------------------------------------------------------------------


class _Seed:
    """Runs one seed: its world, its state file, its runs; fills a `SeedResult`."""

    def __init__(self, plan: SeedPlan, workdir: Path, world: World) -> None:
        self.plan = plan
        self.rng = random.Random(f"pslab-reliability:{plan.kind}:{plan.seed}")
        users = self.rng.randint(*plan.users)
        audiences = self.rng.randint(*plan.audiences)
        self.workload: Workload = build_workload(
            "quick", users=users, audiences=audiences, seed=plan.seed
        )
        self.workdir = workdir
        self.world = world
        self.state_path = workdir / "pslab-state.sqlite"
        self.result = SeedResult(seed=plan.seed, kind=plan.kind, users=users, audiences=audiences)
        self.emulator: EmulatorProcess | None = None
        self.attempts: list[Attempt] = []
        self.rejects: list[dict[str, Any]] = []
        lines = list(self.workload.iter_lines())
        for bad in BAD_LINES:
            lines.insert(self.rng.randint(0, len(lines)), bad)
        large = [*_older_versions(lines), *lines]
        self.input = _write_lines(workdir / "events.ndjson", lines)
        self.large_input = _write_lines(workdir / "events-large.ndjson", large)
        self.empty = _write_lines(workdir / "empty.ndjson", [])
        self.line_counts = {self.input: len(lines), self.large_input: len(large), self.empty: 0}
        self.next_source = self.input  # what the next run reads (see `_after`)

    # -- runs ---

    def run(
        self,
        source: Path,
        kill: KillPlan | None = None,
        *,
        key: str = SECRET_KEY,
        during: Callable[[subprocess.Popen[bytes], int], None] | None = None,
    ) -> Attempt:
        """One `pslab sync` run over `source`; killed as `kill` says, if it gets that far.

        `during(process, journal_offset)`, when given, runs while the process does (instead
        of a kill), for what happens to the world around the run.
        """
        number = len(self.attempts) + 1
        attempt = Attempt(
            number,
            kill,
            self.line_counts[source],
            key="right" if key == SECRET_KEY else "wrong",
        )
        offset = len(self.world.journal())
        attempt.started_at = time.time()
        self.current = attempt
        out_path = self.workdir / f"run{number}.out"
        err_path = self.workdir / f"run{number}.err"
        rejects = self.workdir / f"run{number}.rejects.ndjson"
        env = {**os.environ, "POSTSCRIPT_SECRET_KEY": key}
        command = [
            *PSLAB,
            "sync",
            "--input",
            str(source),
            "--base-url",
            self.world.base_url,
            "--state",
            str(self.state_path),
            "--rate-limit",
            "0",
            "--rejects-out",
            str(rejects),
            "--json",
        ]
        with out_path.open("w") as out, err_path.open("w") as err:
            process = subprocess.Popen(  # noqa: S603 -- our own program
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env
            )
            try:
                if kill is not None:
                    self._kill_at(kill, process, offset)
                elif during is not None:
                    during(process, offset)
                process.wait(timeout=ATTEMPT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                attempt.hung = True
            finally:
                if process.poll() is None:  # an error in the suite itself: leave nothing behind
                    process.kill()
                    process.wait()
        attempt.returncode = process.returncode
        attempt.wall_s = time.time() - attempt.started_at
        attempt.killed = process.returncode == -signal.SIGKILL and not attempt.hung
        attempt.killed_at = _KILLED_AT.pop(process.pid, None)
        attempt.stderr = err_path.read_text(encoding="utf-8", errors="replace")
        stdout = out_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if stdout and stdout[-1].startswith("{"):
            with suppress(ValueError):
                attempt.summary = json.loads(stdout[-1])
        if rejects.exists():
            attempt.rejects = [
                json.loads(line) for line in rejects.read_text().splitlines() if line
            ]
            self.rejects.extend(attempt.rejects)
        attempt.journal_span = (offset, len(self.world.journal()))
        attempt.api_calls = attempt.journal_span[1] - offset
        self.attempts.append(attempt)
        # Segment re-delivers what was never acknowledged. A run has stored all its input once
        # it exits 0 or calls Postscript for anything but `GET /me` (the shop check comes
        # before ingest; lookups and writes after it).
        calls = self.world.journal()[slice(*attempt.journal_span)]
        ingested = attempt.returncode == 0 or any(entry["path"] != ME_PATH for entry in calls)
        self.next_source = self.empty if ingested else source
        return attempt

    def _kill_at(self, kill: KillPlan, process: subprocess.Popen[bytes], offset: int) -> None:
        if kill.point in ("random", "ingest"):
            if _wait_until_open(process, self.state_path):
                _sleep_while_alive(process, kill.delay_s)
                _kill(process)
        elif kill.point == "commit":
            self._kill_in_commit(kill, process, offset)
        else:
            wanted = {"lookup": _is_lookup, "patch": _is_patch_ok, "event": _is_event_ok}
            if self._wait_for_calls(process, offset, wanted[kill.point], kill.nth):
                _kill(process)

    def _wait_for_calls(
        self,
        process: subprocess.Popen[bytes],
        offset: int,
        matches: Callable[[Mapping[str, Any]], bool],
        nth: int,
        timeout_s: float = ATTEMPT_TIMEOUT_S,
    ) -> bool:
        """Poll the journal until `nth` calls since `offset` match; False if the run ended."""
        deadline = time.monotonic() + timeout_s
        while process.poll() is None and time.monotonic() < deadline:
            entries = self.world.journal()[offset:]
            if sum(1 for entry in entries if matches(entry)) >= nth:
                return True
            time.sleep(self.world.poll_s)
        return False

    def _kill_in_commit(
        self, kill: KillPlan, process: subprocess.Popen[bytes], offset: int
    ) -> None:
        """Kill the run while one of its writers waits to commit what Postscript just answered.

        Once the run is writing, hold the state file's SQLite write lock; the next PATCH or
        event answered is then journaled by Postscript but cannot be recorded by the engine.
        """
        if not self._wait_for_calls(process, offset, _is_write_ok, kill.nth):
            return
        with closing(sqlite3.connect(self.state_path, timeout=2.0, isolation_level=None)) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                _kill(process)  # the engine held the lock for 2 s: kill it there
                return
            try:
                held_at = len(self.world.journal())
                self._wait_for_calls(process, held_at, _is_write_ok, 1, timeout_s=kill.delay_s)
                _kill(process)
            finally:
                db.execute("ROLLBACK")

    def _kill_emulator_during(self, process: subprocess.Popen[bytes], offset: int) -> None:
        """SIGKILL the emulator right after a write it answered, restart it on its state file."""
        assert self.emulator is not None
        for _ in range(self.plan.kills):
            nth = self.rng.randint(1, 12)
            if not self._wait_for_calls(process, offset, _is_write_ok, nth):
                return
            time.sleep(self.rng.uniform(0, 0.02))  # into the next write, often mid-way
            self.world.earlier = self.world.journal()
            self.emulator.kill()
            self.result.emulator_kills += 1
            self.current.emulator_kills += 1
            time.sleep(self.rng.uniform(0.05, 0.5))
            self.world.reconnect(self.emulator.start())
            self.world.set_faults(self.world.faults)
            offset = len(self.world.journal())

    # -- the seed's story ---

    def play(self) -> None:
        kind = self.plan.kind
        subscribers = self.workload.subscribers
        refused_subscriber: str | None = None
        if kind == "refused_patch":
            subscribers, refused_subscriber = self._crowd_one_subscriber(subscribers)
        self.world.seed(subscribers)
        faults = _faults_for(kind, self.rng, self.plan.seed, self.plan.error_rate)
        self.world.set_faults(faults)
        if kind == "emulator_kill":
            self._play_emulator_kills()
        elif kind == "injected_404":
            self._play_404s()
        else:
            self._play_kills(wrong_key=kind == "wrong_key")
        self._finish()
        if refused_subscriber is not None:
            self._check_refusal(refused_subscriber)
        self._judge(refused_subscriber)

    def _play_kills(self, *, wrong_key: bool = False) -> None:
        """Runs killed at chosen points until `plan.kills` kills (or nothing is left to do).

        With `wrong_key`, the run after the first kill uses a wrong key: it must stop at once
        with one line, and the runs after it (with the right key) carry on.
        """
        kills = 0
        while kills < max(1, self.plan.kills) and len(self.attempts) < self.plan.kills * 3 + 3:
            kill = self._choose_kill()
            if wrong_key and kills == 0:
                kill = KillPlan("lookup", nth=1)  # the first run always looks subscribers up
            source = self.large_input if kill.point == "ingest" else self.next_source
            attempt = self.run(source, kill)
            if attempt.killed:
                kills += 1
                if wrong_key:
                    wrong_key = False
                    self._run_with_wrong_key()
            elif attempt.drained:
                break  # nothing left to interrupt
        if wrong_key:
            self.result.problems.append("the wrong-key run never happened (no run was killed)")

    def _run_with_wrong_key(self) -> None:
        attempt = self.run(self.next_source, key=WRONG_KEY)
        if not (attempt.one_line_failure and "secret key" in attempt.stderr):
            self.result.problems.append(
                f"run {attempt.number} with a wrong key: exit {attempt.returncode}, "
                f"stderr {attempt.stderr.strip()!r} (wanted exit 1 and one line)"
            )
        if WRONG_KEY in attempt.stderr:
            self.result.problems.append("the wrong key was printed")

    def _choose_kill(self) -> KillPlan:
        weights: dict[KillPoint, int] = {
            "random": 2,
            "ingest": 1,
            "lookup": 1,
            "patch": 3,
            "event": 1,
            "commit": 2,
        }
        if self.plan.mode == "fault":
            weights["ingest"] = 0
        point = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        if point == "random":
            return KillPlan(point, delay_s=self.rng.uniform(0.0, 1.5))
        if point == "ingest":
            return KillPlan(point, delay_s=self.rng.uniform(0.0, 0.5))
        if point == "lookup":
            return KillPlan(point, nth=self.rng.randint(1, 2))
        if point == "commit":
            return KillPlan(point, nth=self.rng.randint(1, 12), delay_s=0.5)
        return KillPlan(point, nth=self.rng.randint(1, 12))

    def _play_404s(self) -> None:
        """Runs with 404 answers injected until a PATCH met one; then the faults lift.

        The PATCHed subscriber's changes park (a 404 says it is gone); the next run, with
        the subscriber answering again, applies them.
        """

        def met_404() -> bool:
            journal = self.world.journal()
            return any(entry["method"] == "PATCH" and entry["status"] == 404 for entry in journal)

        for _ in range(4):
            if self.run(self.next_source).drained or met_404():
                break
        if not met_404():
            self.result.problems.append("no PATCH was answered 404: the fault seed missed it")
        self.world.set_faults({})

    def _play_emulator_kills(self) -> None:
        """The emulator is killed and restarted during the first run; runs go on until done."""
        self.run(self.next_source, during=self._kill_emulator_during)

    def _finish(self) -> None:
        """Runs without kills, as many as it takes (up to `FINISH_ATTEMPTS`), until drained."""
        for _ in range(FINISH_ATTEMPTS + 1):
            if self.attempts and self.attempts[-1].drained:
                self.result.finished = True
                return
            self.run(self.next_source)

    def _crowd_one_subscriber(
        self, subscribers: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        """Give one subscriber that must enter an audience 50 custom properties already."""
        entering = {_who(row) for row in self.workload.expected if row["member"]}
        crowded = [dict(item) for item in subscribers]
        for index, item in enumerate(crowded):
            if _who(item) in entering:
                subscriber_id = "s_" + f"{self.plan.seed:08x}{index:08x}".rjust(24, "0")
                properties = {f"Loyalty Field {n:02d}": n for n in range(CUSTOM_PROPERTY_LIMIT)}
                crowded[index] = {**item, "id": subscriber_id, "properties": properties}
                return crowded, subscriber_id
        raise ValueError("the workload has no subscriber who enters an audience")

    def _check_refusal(self, subscriber_id: str) -> None:
        """The refused write is reported by the run that made it, and never tried again.

        A run killed after the refusal cannot report it (its `--rejects-out` is written at
        the end), and no later run does either: that is counted, not failed (see the README
        draft: refusals of a killed run stay in the state file only).
        """
        journal = self.world.journal()
        refusing = [
            attempt
            for attempt in self.attempts
            for entry in journal[slice(*attempt.journal_span)]
            if entry["method"] == "PATCH"
            and entry["status"] == 400
            and str(entry["path"]).endswith(subscriber_id)
        ]
        if not refusing:
            self.result.problems.append(f"the PATCH of {subscriber_id} was never refused")
        for attempt in refusing:
            if attempt.killed:
                self.result.refusals_unreported += 1
                continue
            reasons = [str(item.get("reason", "")) for item in attempt.rejects]
            if not any(subscriber_id in reason for reason in reasons):
                self.result.problems.append(
                    f"run {attempt.number} did not report the refused PATCH of {subscriber_id}"
                    " in --rejects-out"
                )
        idle = self.run(self.empty)
        calls = [
            f"{entry['method']} {entry['path']}"
            for entry in self.world.journal()[slice(*idle.journal_span)]
            if entry["path"] != ME_PATH
        ]
        if idle.returncode != 0 or calls:
            self.result.problems.append(
                f"a run after the refusal exited {idle.returncode} and called {calls} "
                "(the refused change is retried)"
            )

    # -- checks ---

    def _judge(self, refused_subscriber: str | None) -> None:
        result = self.result
        state = self.world.state()
        journal = self.world.journal()
        result.processes = len(self.attempts)
        result.events_delivered = sum(attempt.input_events for attempt in self.attempts)
        for attempt in self.attempts:
            if attempt.killed and attempt.plan is not None:
                result.kills[attempt.plan.point] += 1
            summary = attempt.summary or {}
            result.rejected_inputs += int(summary.get("rejected") or 0)
            result.refused += int(summary.get("refused") or 0)
            if attempt.traceback:
                result.tracebacks += 1
                result.problems.append(f"run {attempt.number} printed a traceback")
            if attempt.hung:
                result.problems.append(f"run {attempt.number} hung ({ATTEMPT_TIMEOUT_S:.0f} s)")
            if not attempt.killed and attempt.returncode != 0 and not self._explained(attempt):
                result.unexplained_failures += 1
                result.problems.append(
                    f"run {attempt.number} exited {attempt.returncode} without a fault to "
                    f"explain it: {attempt.stderr.strip()[-300:]!r}"
                )
        last = self.attempts[-1].summary if self.attempts else None
        if last is not None:
            result.unsettled = int(last.get("pending") or 0) + int(last.get("parked") or 0)
        if not result.finished:
            result.problems.append(f"no run exited 0 with nothing pending or parked ({last})")
        _count_journal(journal, result)
        refused_events = {
            (str(item["event"].get("subscriber_id")), _audience_key(item["event"]))
            for item in self.rejects
            if isinstance(item.get("event"), dict) and "refused the event" in item["reason"]
        }
        _score(state, self.workload, result, refused_subscriber, refused_events)
        _explain_repeats(state["events"], self.attempts, result)
        if result.lost:
            result.problems.append(
                f"lost: {result.lost} ({result.missing_events} memberships changed without "
                f"their event, {result.unsettled} changes pending or parked at the end)"
            )
        described = (
            "tracebacks",
            "unexplained_failures",
            "never_finished",
            "unexplained_repeats",
            "lost",
        )
        for name in MUST_BE_ZERO:
            value = getattr(result, name)
            if value and name not in described:
                result.problems.append(f"{name}: {value}")
        if self.emulator is not None:
            log = self.emulator.log_text()
            result.emulator_tracebacks += log.count(TRACEBACK)
        result.attempts = [attempt.brief() for attempt in self.attempts]

    def _explained(self, attempt: Attempt) -> bool:
        """A non-zero exit a fault explains: one line, and a fault (or the wrong key) in play."""
        if not attempt.one_line_failure:
            return False
        return self.plan.mode == "fault"


def _count_journal(journal: Sequence[Mapping[str, Any]], result: SeedResult) -> None:
    for entry in journal:
        status = entry.get("status")
        fault = entry.get("fault")
        if fault == "error":
            result.faults[f"error_{status}"] += 1
        elif fault == "timeout":
            result.faults["timeout"] += 1
        elif status == 429:
            result.faults["rate_limited_429"] += 1
        elif status == 401:
            result.faults["wrong_key_401"] += 1
        elif status == 400 and entry.get("method") == "PATCH":
            result.faults["refused_patch_400"] += 1
        elif status is None:
            result.abandoned_calls += 1
        elif status >= 500:
            result.server_errors_outside_faults += 1
    if result.emulator_kills:
        result.faults["emulator_killed"] += result.emulator_kills


def _score(
    state: Mapping[str, Any],
    workload: Workload,
    result: SeedResult,
    refused_subscriber: str | None,
    refused_events: set[tuple[str, str]],
) -> None:
    """Memberships against the ground truth, and whether the posted events mirror them."""
    by_phone, by_email = index_subscribers(state)
    folded: dict[tuple[str, str], bool] = {}
    for event in state["events"]:
        key = (str(event.get("subscriber_id")), _audience_key(event))
        folded[key] = event.get("type") == ENTERED
    result.repeated_events = count_repeated(state["events"])
    expected = workload.expected
    result.memberships = len(expected)
    for row in expected:
        subscriber = by_phone.get(row["phone_number"] or "") or by_email.get(
            (row["email"] or "").lower()
        )
        if subscriber is None:
            result.wrong_memberships += 1
            continue
        subscriber_id = str(subscriber["id"])
        pair = (subscriber_id, str(row["audience_key"]))
        audiences = (subscriber.get("properties") or {}).get(AUDIENCES_PROPERTY) or []
        present = row["audience_key"] in audiences
        if subscriber_id == refused_subscriber and row["member"] and not present:
            result.refused_memberships += 1  # Postscript refused it; the run said so
            continue
        if present != row["member"]:
            result.wrong_memberships += 1
        if folded.get(pair, False) != row["member"] and pair not in refused_events:
            result.missing_events += 1
            if result.missing_events <= 3:
                wanted = "Entered" if row["member"] else "Exited"
                result.problems.append(
                    f"lost event: {subscriber_id} is {'' if present else 'not '}in "
                    f"{row['audience_key']!r}, but no Segment_Audience_{wanted} was posted for it"
                )


def _explain_repeats(
    events: Sequence[Mapping[str, Any]], attempts: Sequence[Attempt], result: SeedResult
) -> None:
    """Hold each repeated event to a kill of the run that posted the copy before it.

    An event repeats (`count_repeated`) when the run that posted the previous copy had
    Postscript take it but could not record that: it was killed (or its emulator was) with
    that event in flight. One kill leaves at most one event in flight per writer, and one
    per (subscriber, audience); anything beyond that, or a repeat whose previous copy came
    from a run nobody killed, is unexplained (and described in `result.problems`).

    A copy is the work of the last run started `STARTUP_S` before Postscript stored it: a
    killed run's call can still be stored a few milliseconds after the next run started,
    and no run reaches Postscript sooner than that after it starts.
    """
    starts = [attempt.started_at + STARTUP_S for attempt in attempts]
    origin = attempts[0].started_at if attempts else 0.0

    def stored_at(event: Mapping[str, Any]) -> float | None:
        try:
            return datetime.fromisoformat(str(event.get("received_at"))).timestamp()
        except ValueError:
            return None

    def run_at(event: Mapping[str, Any]) -> Attempt | None:
        stored = stored_at(event)
        if stored is None or not attempts or stored < attempts[0].started_at:
            return None
        # the first run owns everything from its own start: no run came before it
        return attempts[max(0, bisect.bisect_right(starts, stored) - 1)]

    def describe(event: Mapping[str, Any], before: Attempt | None, why: str) -> str:
        stored = stored_at(event)
        when = "?" if stored is None else f"{stored - origin:.3f} s"
        cause = "no run" if before is None else f"run {before.number}"
        if before is not None and before.killed_at is not None:
            cause += f" (killed at {before.killed_at - origin:.3f} s)"
        return (
            f"repeated {event.get('type')} {event.get('external_id')} for "
            f"{event.get('subscriber_id')} stored at {when}; the copy before it came from "
            f"{cause}: {why}"
        )

    last: dict[tuple[str, str], tuple[bool, Attempt | None]] = {}
    per_run: dict[int, list[tuple[tuple[str, str], Mapping[str, Any]]]] = {}
    for event in events:
        if event.get("type") not in (ENTERED, EXITED):
            continue
        pair = (str(event.get("subscriber_id")), _audience_key(event))
        enters = event.get("type") == ENTERED
        previous = last.get(pair)
        if (previous[0] if previous is not None else False) == enters:
            cause = previous[1] if previous is not None else None
            if cause is None:
                result.unexplained_repeats += 1
                result.problems.append(describe(event, None, "no copy before it"))
            else:
                per_run.setdefault(cause.number, []).append((pair, event))
        last[pair] = (enters, run_at(event))
    by_number = {attempt.number: attempt for attempt in attempts}
    for number, repeats in per_run.items():
        attempt = by_number[number]
        kills = int(attempt.killed) + attempt.emulator_kills
        per_pair: Counter[tuple[str, str]] = Counter()
        explained = 0
        for pair, event in repeats:
            per_pair[pair] += 1
            if per_pair[pair] > kills:
                why = "that run was not killed" if kills == 0 else "more than once per kill"
            elif explained >= kills * WRITERS:
                why = f"more than {WRITERS} (writers) per kill"
            else:
                explained += 1
                continue
            result.unexplained_repeats += 1
            result.problems.append(describe(event, attempt, why))
        result.kills_repeating_several += int(len(repeats) > max(1, kills))


def _who(item: Mapping[str, Any]) -> str:
    """A subscriber or expected row by phone, else lower-cased email."""
    return str(item.get("phone_number") or str(item.get("email") or "").lower())


def _audience_key(event: Mapping[str, Any]) -> str:
    properties = event.get("properties") or {}
    return str(properties.get("Segment Audience Key"))


# -- journal predicates and process helpers ---------------------------------------------


def _is_lookup(entry: Mapping[str, Any]) -> bool:
    return bool(entry["method"] == "GET" and entry["path"] == LIST_PATH)


def _is_patch_ok(entry: Mapping[str, Any]) -> bool:
    return bool(entry["method"] == "PATCH" and entry["status"] == 200)


def _is_event_ok(entry: Mapping[str, Any]) -> bool:
    return bool(
        entry["method"] == "POST" and entry["path"] == EVENTS_PATH and entry["status"] == 202
    )


def _is_write_ok(entry: Mapping[str, Any]) -> bool:
    return _is_patch_ok(entry) or _is_event_ok(entry)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        _KILLED_AT[process.pid] = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait()


def _sleep_while_alive(process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))


def _wait_until_open(process: subprocess.Popen[bytes], path: Path, timeout_s: float = 60.0) -> bool:
    """Wait until the process has `path` open (Linux /proc); False if it ended first."""
    wanted = str(path.resolve())
    fd_dir = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        with suppress(OSError):
            for link in fd_dir.iterdir():
                with suppress(OSError):
                    if os.readlink(link) == wanted:
                        return True
        time.sleep(0.005)
    return process.poll() is None


def _write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _older_versions(lines: Sequence[str]) -> Iterator[str]:
    """`PADDING_COPIES` older versions of each valid line: a large input that changes nothing.

    Each copy names the same shopper and audience with a new messageId and a timestamp in
    2023, before any real event, so the real lines that follow supersede every one.
    """
    for copy in range(PADDING_COPIES):
        for number, line in enumerate(lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or "context" not in event:
                continue
            event["messageId"] = f"older-{copy}-{number}-{event.get('messageId')}"
            instant = f"2023-{1 + copy % 12:02d}-{1 + number % 28:02d}T00:00:{copy % 60:02d}Z"
            for name in ("timestamp", "originalTimestamp", "receivedAt"):
                if name in event:
                    event[name] = instant
            yield json.dumps(event, separators=(",", ":"))


def _faults_for(
    kind: str, rng: random.Random, seed: int, error_rate: float | None = None
) -> dict[str, Any]:
    """The emulator's fault setting for a seed of this kind (`PUT /_emulator/faults`)."""
    window: dict[str, Any] = {"latency_ms": [20, 60], "seed": seed}
    statuses = [500, 502, 503, 429]
    if kind == "errors":
        rate = rng.choice((0.1, 0.2, 0.3, 0.5)) if error_rate is None else error_rate
        return {"error_rate": rate, "error_statuses": statuses, "latency_ms": [5, 30], "seed": seed}
    if kind == "timeouts":
        timeout = {"timeout_rate": round(rng.uniform(0.03, 0.1), 3), "timeout_ms": 150}
        return {**timeout, "latency_ms": [5, 30], "seed": seed}
    if kind == "rate_limit":
        return {"rate_limit_rps": rng.choice((8, 10, 15)), "latency_ms": [0, 10], "seed": seed}
    if kind == "mixed":
        errors = {"error_rate": 0.2, "error_statuses": statuses}
        return {**errors, "timeout_rate": 0.05, "timeout_ms": 150, **window}
    if kind == "injected_404":
        return {"error_rate": 0.2, "error_statuses": [404], "latency_ms": [5, 20], "seed": seed}
    if kind == "emulator_kill":
        return {}
    return window


def run_seed(plan: SeedPlan) -> SeedResult:
    """Run one seed from scratch and check it; never raises for what it finds."""
    _quiet_hang_ups()
    started = time.monotonic()
    hang_ups_before = _ClientHangUps.count
    with tempfile.TemporaryDirectory(prefix=f"pslab-reliability-{plan.seed}-") as folder:
        workdir = Path(folder)
        with _world_for(plan, workdir) as (world, emulator):
            seed = _Seed(plan, workdir, world)
            seed.emulator = emulator
            try:
                seed.play()
            except Exception as error:  # the suite's own failure: report it, do not hide it
                seed.result.problems.append(f"the suite failed: {type(error).__name__}: {error}")
                seed.result.attempts = [attempt.brief() for attempt in seed.attempts]
            if emulator is not None:
                _check_emulator_state_file(seed, emulator)
    seed.result.emulator_tracebacks += _ClientHangUps.count - hang_ups_before
    seed.result.wall_s = time.monotonic() - started
    return seed.result


@contextmanager
def _world_for(plan: SeedPlan, workdir: Path) -> Iterator[tuple[World, EmulatorProcess | None]]:
    if plan.kind != "emulator_kill":
        with _emulator_in_process(EmulatorConfig(rate_limit_rps=0)) as (base_url, journal):
            world = World(base_url, tee=journal)
            try:
                yield world, None
            finally:
                world.close()
        return
    emulator = EmulatorProcess(workdir / "emulator-state.sqlite", workdir / "emulator.log")
    world = World(emulator.start())
    try:
        yield world, emulator
    finally:
        world.close()
        emulator.stop()


@contextmanager
def _emulator_in_process(config: EmulatorConfig) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Like `serve_in_background`, and also a live copy of the request journal.

    The copy is taken through `Journal.append`, so each entry is seen as it is journaled.
    """
    app = create_app(config)
    emulator: Emulator = app.state.emulator
    journal = emulator.journal
    copied: list[dict[str, Any]] = []
    append = journal.append

    def tee(entry: dict[str, Any]) -> None:
        append(entry)
        copied.append(entry)

    journal.append = tee  # type: ignore[method-assign]
    with serve_app_in_background(app) as base_url:
        yield base_url, copied


def _check_emulator_state_file(seed: _Seed, emulator: EmulatorProcess) -> None:
    """The killed emulator's state file passes SQLite's check and serves again after restart."""
    emulator.stop()
    with closing(sqlite3.connect(emulator.state_path)) as db:
        verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        seed.result.problems.append(f"the emulator's state file fails integrity_check: {verdict}")
    url = emulator.start()
    with httpx.Client(base_url=url, timeout=60) as admin:
        held = admin.get("/_emulator/state").json()
    if len(held["subscribers"]) != len(seed.workload.subscribers):
        seed.result.problems.append(
            f"the restarted emulator holds {len(held['subscribers'])} subscribers, "
            f"not {len(seed.workload.subscribers)}"
        )


# -- the suite ------------------------------------------------------------------------


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
