"""What the package says about itself: its version, and help when `pslab` is given nothing."""

from __future__ import annotations

import importlib.metadata
import subprocess

import postscript_audience_lab
from tests.processes import PSLAB


def run_pslab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"NO_COLOR": "1", "COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )


def test_version_prints_the_one_version_the_distribution_has() -> None:
    result = run_pslab("--version")

    assert result.returncode == 0, result.stderr
    version = importlib.metadata.version("postscript-audience-lab")
    assert result.stdout == f"pslab {version}\n"
    assert version == postscript_audience_lab.__version__


def test_bare_pslab_prints_its_help_and_succeeds() -> None:
    result = run_pslab()

    assert result.returncode == 0, result.stderr
    assert "Usage: pslab" in result.stdout
    for command in ("emulator", "sync", "serve", "reconcile", "demo", "contracts"):
        assert command in result.stdout


def test_an_unknown_command_is_still_a_usage_error() -> None:
    result = run_pslab("nosuch")

    assert result.returncode == 2
    assert "No such command 'nosuch'" in result.stderr
