"""`pslab bench`: what it checks, how it prints, and one quick run from outside."""

from __future__ import annotations

import copy
import json
import multiprocessing
import shutil
import subprocess
import sys
from typing import Any

import pytest

from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.lab.bench.child import peak_rss_mb
from postscript_audience_lab.lab.bench.targets import check
from postscript_audience_lab.lab.comparison import Comparison, WorkloadFacts, count_repeated
from postscript_audience_lab.lab.render import markdown


def _system(total: int, *, share: float = 1.0, repeated: int = 0) -> dict[str, Any]:
    return {
        "events_received": 100,
        "duplicates_dropped": 10,
        "stale_skipped": 2,
        "api_calls": {"total": total, "subscribers.list": 2, "subscribers.patch": total - 2},
        "calls_per_change": total / 90,
        "time_to_converge_at_15rps_s": total / 15,
        "memberships_correct": round(80 * share),
        "memberships_total": 80,
        "converged_share": share,
        "events_posted": 50,
        "repeated_events": repeated,
        "wall_s": 1.5,
        "peak_rss_mb": 60.0,
        "drained": True,
    }


PASSING: dict[str, Any] = {
    "preset": "quick",
    "workload": {
        "users": 50,
        "audiences": 4,
        "lines": 100,
        "changes": 90,
        "memberships": 80,
        "identities": 50,
        "subscribers_changed": 49,
        "entries_changed": 50,
    },
    "engine": _system(105),
    "baseline": _system(300, share=0.8, repeated=20),
    "million": None,
}


def test_check_accepts_a_result_that_meets_every_target() -> None:
    assert Comparison.from_json(PASSING).lower_bound == 100
    assert check(Comparison.from_json(PASSING)) == []


@pytest.mark.parametrize(
    ("change", "missed"),
    [
        (("engine", "api_calls", "subscribers.patch", 109), "lower bound"),  # 111 calls
        (("baseline", "api_calls", "subscribers.patch", 258), "baseline"),  # 260 calls
        (("engine", "memberships_correct", None, 79), "converged_share"),  # 79 of 80
        (("engine", "repeated_events", None, 1), "repeated_events"),
        (("engine", "drained", None, False), "not drained"),
    ],
)
def test_check_names_the_target_a_result_misses(
    change: tuple[str, str, str | None, float | bool], missed: str
) -> None:
    result = copy.deepcopy(PASSING)
    system, key, inner, value = change
    if inner is None:
        result[system][key] = value
    else:
        result[system][key][inner] = value

    failures = check(Comparison.from_json(result))

    assert len(failures) == 1
    assert missed in failures[0]


def test_check_fails_when_the_million_event_run_exceeds_the_memory_limit() -> None:
    result = copy.deepcopy(PASSING)
    result["million"] = {
        "input": "a million lines",
        "events": 1_000_000,
        "wall_s": 100.0,
        "ingest_s": 50.0,
        "api_calls": {"total": 10, "subscribers.patch": 10},
        "duplicates_dropped": 0,
        "stale_skipped": 0,
        "drained": True,
        "peak_rss_mb": 250.0,
        "memory_limit_mb": 200.0,
    }

    assert any("1M events" in failure for failure in check(Comparison.from_json(result)))


def test_markdown_shows_both_systems_and_the_lower_bound() -> None:
    table = markdown(Comparison.from_json(PASSING))

    assert "| | engine | Segment destination (baseline) |" in table
    assert "| **API calls, total** | **105** | **300** |" in table
    assert "| memberships correct | 80 / 80 (100.0%) | 64 / 80 (80.0%) |" in table
    assert "Lower bound (docs/design/economy.md): 100 calls" in table


def test_a_comparison_survives_its_own_json() -> None:
    comparison = Comparison.from_json(PASSING)

    assert Comparison.from_json(comparison.to_json()) == comparison


def _event(subscriber: str, kind: str, key: str = "vip") -> dict[str, Any]:
    return {
        "type": f"Segment_Audience_{kind}",
        "subscriber_id": subscriber,
        "properties": {"Segment Audience Key": key},
    }


def test_repeated_events_are_those_that_mirror_no_change() -> None:
    alternating = [_event("s1", "Entered"), _event("s1", "Exited"), _event("s1", "Entered")]
    again = [_event("s2", "Entered"), _event("s2", "Entered")]  # a duplicate delivery
    exit_first = [_event("s3", "Exited")]  # leaving an audience it was never in
    other_audience = [_event("s1", "Entered", key="winback")]

    assert count_repeated(alternating + other_audience) == 0
    assert count_repeated(again) == 1
    assert count_repeated(exit_first) == 1


def test_lower_bound_adds_lookups_changed_subscribers_and_changed_entries() -> None:
    workload = build_workload("quick", users=40, audiences=3)
    facts = WorkloadFacts.of(workload, lines=0)

    entries = sum(1 for row in workload.expected if row["member"])
    assert facts.entries_changed == entries
    assert facts.subscribers_changed <= facts.identities <= 40
    assert facts.lower_bound(lookup_batch=50) == 1 + facts.subscribers_changed + entries
    assert facts.lower_bound(lookup_batch=50, post_events=False) == 1 + facts.subscribers_changed


def test_a_spawned_childs_peak_memory_is_its_own_not_its_parents() -> None:
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"x" * len(range(0, len(ballast), 4096))  # touch every page
    context = multiprocessing.get_context("spawn")

    # a Pool, not a ProcessPoolExecutor: leaving its block terminates the child, so a
    # child that never answers fails the test after the timeout instead of hanging it
    with context.Pool(1) as pool:
        child_peak = pool.apply_async(peak_rss_mb).get(timeout=60)

    assert peak_rss_mb() > 300
    assert 0 < child_peak < 200
    del ballast


@pytest.mark.slow
@pytest.mark.bench
def test_bench_quick_runs_both_systems_on_one_workload_and_meets_every_target() -> None:
    """`nox -s bench`: the quick benchmark from outside, its figures printed for the log."""
    program = shutil.which("pslab")
    command = (
        [program]
        if program
        else [sys.executable, "-c", "from postscript_audience_lab.lab.cli import main; main()"]
    )
    result = subprocess.run(  # noqa: S603 - our own program, fixed arguments
        [*command, "bench", "--preset", "quick", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["million"] is None
    for system in ("engine", "baseline"):
        figures = summary[system]
        assert figures["events_received"] == summary["workload"]["lines"]
        assert figures["peak_rss_mb"] > 0
        assert figures["api_calls"]["total"] == sum(
            count for endpoint, count in figures["api_calls"].items() if endpoint != "total"
        )
    comparison = Comparison.from_json(summary)
    print(f"\n{markdown(comparison)}")  # `nox -s bench` runs with -s: the figures go to the log
    assert check(comparison) == []  # converged, no repeats, <= 1.10 x bound, <= baseline / 2.5
