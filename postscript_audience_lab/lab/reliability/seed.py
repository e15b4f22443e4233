"""One seed: its world and input files, its `pslab sync` runs killed at planned points, then
the checks; `run_seed` runs one from scratch in a temporary folder.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import httpx

from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY
from postscript_audience_lab.emulator.segment.workload import Workload, build_workload
from postscript_audience_lab.lab.reliability.inputs import BAD_LINES, older_versions, write_lines
from postscript_audience_lab.lab.reliability.judge import (
    audience_key,
    count_journal,
    explain_repeats,
    score,
    who,
)
from postscript_audience_lab.lab.reliability.kills import (
    KILLED_AT,
    is_event_ok,
    is_lookup,
    is_patch_ok,
    is_write_ok,
    kill_process,
    sleep_while_alive,
    wait_until_open,
)
from postscript_audience_lab.lab.reliability.plans import (
    MUST_BE_ZERO,
    TRACEBACK,
    Attempt,
    KillPlan,
    KillPoint,
    SeedPlan,
    SeedResult,
)
from postscript_audience_lab.lab.reliability.world import (
    PSLAB,
    ClientHangUps,
    EmulatorProcess,
    World,
    faults_for,
    quiet_hang_ups,
    world_for,
)

__all__ = [
    "run_seed",
]

SECRET_KEY = DEFAULT_SECRET_KEY
WRONG_KEY = "sk_reliability_not_the_key"  # a deliberately wrong key
ME_PATH = "/api/v2/me"
CUSTOM_PROPERTY_LIMIT = 50
ATTEMPT_TIMEOUT_S = 240.0  # a run still going after this is killed and counted as hung
FINISH_ATTEMPTS = 12  # runs after the planned kills to reach exit 0; more is "never finished"


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
        self.input = workdir / "events.ndjson"
        self.large_input = workdir / "events-large.ndjson"
        self.empty = workdir / "empty.ndjson"
        self.line_counts: dict[Path, int] = {}  # lines per input, once `write_inputs` wrote them
        self.next_source = self.input  # what the next run reads (see `_after`)

    def write_inputs(self) -> None:
        """Write the runs' inputs to the work folder: the workload's lines with `BAD_LINES`
        among them, the large input of `ingest` kills, and an empty one. Before `play`: the
        bad lines' places are drawn from the seed's random numbers, first."""
        lines = list(self.workload.iter_lines())
        for bad in BAD_LINES:
            lines.insert(self.rng.randint(0, len(lines)), bad)
        large = [*older_versions(lines), *lines]
        write_lines(self.input, lines)
        write_lines(self.large_input, large)
        write_lines(self.empty, [])
        self.line_counts = {self.input: len(lines), self.large_input: len(large), self.empty: 0}

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
        attempt.killed_at = KILLED_AT.pop(process.pid, None)
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
            if wait_until_open(process, self.state_path):
                sleep_while_alive(process, kill.delay_s)
                kill_process(process)
        elif kill.point == "commit":
            self._kill_in_commit(kill, process, offset)
        else:
            wanted = {"lookup": is_lookup, "patch": is_patch_ok, "event": is_event_ok}
            if self._wait_for_calls(process, offset, wanted[kill.point], kill.nth):
                kill_process(process)

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
        if not self._wait_for_calls(process, offset, is_write_ok, kill.nth):
            return
        with closing(sqlite3.connect(self.state_path, timeout=2.0, isolation_level=None)) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                kill_process(process)  # the engine held the lock for 2 s: kill it there
                return
            try:
                held_at = len(self.world.journal())
                self._wait_for_calls(process, held_at, is_write_ok, 1, timeout_s=kill.delay_s)
                kill_process(process)
            finally:
                db.execute("ROLLBACK")

    def _kill_emulator_during(self, process: subprocess.Popen[bytes], offset: int) -> None:
        """SIGKILL the emulator right after a write it answered, restart it on its state file."""
        assert self.emulator is not None
        for _ in range(self.plan.kills):
            nth = self.rng.randint(1, 12)
            if not self._wait_for_calls(process, offset, is_write_ok, nth):
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
        faults = faults_for(kind, self.rng, self.plan.seed, self.plan.error_rate)
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
        entering = {who(row) for row in self.workload.expected if row["member"]}
        crowded = [dict(item) for item in subscribers]
        for index, item in enumerate(crowded):
            if who(item) in entering:
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
        count_journal(journal, result)
        refused_events = {
            (str(item["event"].get("subscriber_id")), audience_key(item["event"]))
            for item in self.rejects
            if isinstance(item.get("event"), dict) and "refused the event" in item["reason"]
        }
        score(state, self.workload, result, refused_subscriber, refused_events)
        explain_repeats(state["events"], self.attempts, result)
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


def run_seed(plan: SeedPlan) -> SeedResult:
    """Run one seed from scratch and check it; never raises for what it finds."""
    quiet_hang_ups()
    started = time.monotonic()
    hang_ups_before = ClientHangUps.count
    with tempfile.TemporaryDirectory(prefix=f"pslab-reliability-{plan.seed}-") as folder:
        workdir = Path(folder)
        with world_for(plan, workdir) as (world, emulator):
            seed = _Seed(plan, workdir, world)
            seed.write_inputs()
            seed.emulator = emulator
            try:
                seed.play()
            except Exception as error:  # the suite's own failure: report it, do not hide it
                seed.result.problems.append(f"the suite failed: {type(error).__name__}: {error}")
                seed.result.attempts = [attempt.brief() for attempt in seed.attempts]
            if emulator is not None:
                _check_emulator_state_file(seed, emulator)
    seed.result.emulator_tracebacks += ClientHangUps.count - hang_ups_before
    seed.result.wall_s = time.monotonic() - started
    return seed.result


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
