"""One small crash-mode seed of the reliability suite: quick enough for `nox -s fast`."""

from __future__ import annotations

from postscript_audience_lab.lab.reliability import SeedPlan, run_seed


def test_a_sync_killed_three_times_then_rerun_converges_with_nothing_lost() -> None:
    result = run_seed(SeedPlan(301, "crash", kills=3, users=(20, 30)))
    assert not result.problems, "\n".join(result.problems)
    assert result.crashes >= 1
    assert result.finished
