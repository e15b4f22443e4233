"""`pslab demo` from outside: a fresh process, nothing set up, exit 0 once the engine converged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import unwrapped

pytestmark = pytest.mark.slow


def _pslab(*args: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("pslab")
    command = (
        [program]
        if program
        else [sys.executable, "-c", "from postscript_audience_lab.lab.cli import main; main()"]
    )
    return subprocess.run(  # noqa: S603 - our own program, fixed arguments
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_demo_exits_zero_and_prints_both_systems_side_by_side() -> None:
    result = _pslab("demo")

    assert result.returncode == 0, result.stderr
    for row in (
        "events received",
        "duplicates dropped",
        "stale events skipped",
        "API calls: subscribers.patch",
        "calls per membership change",
        "time to converge at 15 req/s",
        "memberships correct",
        "repeated Postscript events",
    ):
        assert row in result.stdout
    assert "Segment destination" in result.stdout
    assert "The engine converged" in result.stdout


def test_demo_json_shows_the_engine_converged_where_the_destination_did_not(
    tmp_path: Path,
) -> None:
    state = tmp_path / "demo-state.sqlite"
    result = _pslab("demo", "--json", "--state", str(state))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    engine, baseline = summary["engine"], summary["baseline"]
    assert summary["converged"] is True
    assert engine["converged_share"] == 1.0
    assert engine["repeated_events"] == 0
    assert engine["duplicates_dropped"] > 0
    assert baseline["converged_share"] < 1.0
    assert baseline["repeated_events"] > 0
    assert engine["api_calls"]["total"] < baseline["api_calls"]["total"]
    assert state.exists()
    assert summary["wall_s"] > 0  # its time is a figure it prints, not a test of this machine


def test_demo_refuses_a_state_file_that_already_exists(tmp_path: Path) -> None:
    state = tmp_path / "old.sqlite"
    state.write_text("")

    result = _pslab("demo", "--state", str(state))

    assert result.returncode == 2
    assert "already exists" in unwrapped(result.stderr)
