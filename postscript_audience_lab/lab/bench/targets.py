"""The benchmark's acceptance targets, and which of them a comparison misses."""

from __future__ import annotations

from postscript_audience_lab.lab.comparison import Comparison

__all__ = ["MAX_CALLS_OVER_BOUND", "MEMORY_LIMIT_MB", "MIN_SAVING_OVER_BASELINE", "check"]

MEMORY_LIMIT_MB = 200.0
MAX_CALLS_OVER_BOUND = 1.10
MIN_SAVING_OVER_BASELINE = 2.5


def check(result: Comparison) -> list[str]:
    """The targets the result misses (empty when it meets them all)."""
    engine, baseline = result.engine, result.baseline
    calls, baseline_calls = engine.calls_total, baseline.calls_total
    bound = result.lower_bound
    failures = []
    if calls > MAX_CALLS_OVER_BOUND * bound:
        failures.append(
            f"engine api calls {calls} > {MAX_CALLS_OVER_BOUND} x lower bound {bound}"
            f" ({calls / bound:.3f}x)"
        )
    if calls * MIN_SAVING_OVER_BASELINE > baseline_calls:
        failures.append(
            f"engine api calls {calls} > baseline {baseline_calls}"
            f" / {MIN_SAVING_OVER_BASELINE} (baseline/engine = {baseline_calls / calls:.2f})"
        )
    if engine.converged_share != 1.0:
        failures.append(f"engine converged_share {engine.converged_share} != 1.0")
    if not engine.drained:
        failures.append("engine not drained: changes left pending or parked")
    if engine.repeated_events != 0:
        failures.append(f"engine repeated_events {engine.repeated_events} != 0")
    million = result.million
    if million is not None and not million.within_memory_limit:
        failures.append(
            f"engine peak memory on 1M events {million.peak_rss_mb} MB"
            f" > {million.memory_limit_mb} MB"
        )
    return failures
