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
  truth says (docs/design/convergence.md#state), as `lab.comparison.score_world` scores it;
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

The modules: `plans` (what is planned and found), `world` (the emulator and its faults),
`kills` (stopping a run at a point), `inputs` (what the runs read), `seed` (one seed's
runs), `judge` (the checks), `suite` (seeds in turn, the table, the command line).
"""

from postscript_audience_lab.lab.reliability.plans import (
    FAULT_KINDS,
    KILL_POINTS,
    MUST_BE_ZERO,
    Attempt,
    KillPlan,
    SeedPlan,
    SeedResult,
)
from postscript_audience_lab.lab.reliability.seed import run_seed
from postscript_audience_lab.lab.reliability.suite import (
    SuiteConfig,
    SuiteResult,
    main,
    plan_seeds,
    reliability_command,
    render_table,
    run_seeds,
    run_suite,
)
from postscript_audience_lab.lab.reliability.world import emulator_in_process, quiet_hang_ups

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
    "emulator_in_process",
    "main",
    "plan_seeds",
    "quiet_hang_ups",
    "reliability_command",
    "render_table",
    "run_seed",
    "run_seeds",
    "run_suite",
]
