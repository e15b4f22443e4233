"""The crash and fault suite: `pslab sync` killed and faulted on purpose (see `seed`)."""

from postscript_audience_lab.lab.reliability.seed import (
    FAULT_KINDS,
    KILL_POINTS,
    MUST_BE_ZERO,
    Attempt,
    KillPlan,
    SeedPlan,
    SeedResult,
    SuiteConfig,
    SuiteResult,
    main,
    plan_seeds,
    reliability_command,
    render_table,
    run_seed,
    run_seeds,
    run_suite,
)

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
