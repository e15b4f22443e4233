"""What the suite plans and what it finds: where a run is killed (`KillPlan`), one seed's
kind and size (`SeedPlan`), one `pslab sync` process (`Attempt`) and a seed's figures
(`SeedResult`), with the figures a correct engine leaves at zero (`MUST_BE_ZERO`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "FAULT_KINDS",
    "KILL_POINTS",
    "MUST_BE_ZERO",
    "TRACEBACK",
    "Attempt",
    "KillPlan",
    "KillPoint",
    "SeedPlan",
    "SeedResult",
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

TRACEBACK = "Traceback (most recent call last)"


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
