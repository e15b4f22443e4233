from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.lab.cli import app

runner = CliRunner()
SMALL = ["--preset", "quick", "--users", "60", "--audiences", "3", "--seed", "7"]


def _generate(tmp_path: Path, name: str, *extra: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    result = runner.invoke(
        app,
        [
            "generate",
            *SMALL,
            "--out",
            str(folder / "events.ndjson"),
            "--subscribers-out",
            str(folder / "subscribers.json"),
            "--expect-out",
            str(folder / "expected.json"),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return folder


def test_generate_writes_events_subscribers_and_expected_membership(tmp_path: Path) -> None:
    folder = _generate(tmp_path, "a", "--batch-size", "4")
    lines = (folder / "events.ndjson").read_text().splitlines()
    assert lines
    assert all("batch" in json.loads(line) for line in lines)
    subscribers = json.loads((folder / "subscribers.json").read_text())["subscribers"]
    assert len(subscribers) == 60
    memberships = json.loads((folder / "expected.json").read_text())["memberships"]
    workload = build_workload("quick", users=60, audiences=3, seed=7)
    assert memberships == workload.expected


def test_generate_with_the_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    first, again = _generate(tmp_path, "a"), _generate(tmp_path, "b")
    for name in ("events.ndjson", "subscribers.json", "expected.json"):
        assert (first / name).read_bytes() == (again / name).read_bytes()


def test_generate_writes_events_to_standard_output_by_default() -> None:
    result = runner.invoke(app, ["generate", *SMALL, "--duplicate-rate", "0", "--late-rate", "0"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(events) == build_workload("quick", users=60, audiences=3, seed=7).truth.events


def test_generate_refuses_an_unknown_preset_and_names_the_choices() -> None:
    result = runner.invoke(app, ["generate", "--preset", "huge"])
    assert result.exit_code != 0
    assert "standard or quick" in result.output
