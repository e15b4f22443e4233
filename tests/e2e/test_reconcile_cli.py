"""`pslab reconcile` as a user runs it: subprocesses against a `pslab emulator` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import running_emulator

SECRET = "sk_e2e_not_a_real_key"
PSLAB = [sys.executable, "-c", "from postscript_audience_lab.lab.cli import main; main()"]
AS_OF = "2026-11-28T09:00:00Z"


@pytest.fixture
def emulator_url() -> Iterator[str]:
    with running_emulator("--secret-key", SECRET, "--rate-limit", "100") as (base_url, _):
        yield base_url


def phone(number: int) -> str:
    return f"+1555555{number:04d}"


def pslab_reconcile(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTSCRIPT_SECRET_KEY"}
    env |= {"POSTSCRIPT_SECRET_KEY": SECRET, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, "reconcile", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def emulator_state(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/_emulator/state").json())


def engage_export(path: Path, numbers: list[int]) -> Path:
    """Engage's formatted audience CSV export: no audience key, one profile a row."""
    rows = ["key,external_ids,anonymous_id,phone"]
    rows += [f'seg_{n},"{{""phone"":[""{phone(n)}""]}}",anon_{n},{phone(n)}' for n in numbers]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_dry_run_then_refusal_then_repair_of_an_audience(emulator_url: str, tmp_path: Path) -> None:
    holders = [
        {"phone_number": phone(n), "properties": {"Segment Audiences": ["vip"]}}
        for n in range(1, 11)
    ]
    missing = [{"phone_number": phone(11)}]
    httpx.post(
        f"{emulator_url}/_emulator/subscribers", json={"subscribers": holders + missing}
    ).raise_for_status()
    state = tmp_path / "state.sqlite"
    common = ["--audience", "vip", "--as-of", AS_OF, "--state", str(state)]
    common += ["--base-url", emulator_url, "--rate-limit", "90"]
    before = emulator_state(emulator_url)

    good = engage_export(tmp_path / "vip.csv", [*range(1, 10), 11])  # 10 out, 11 in
    dry = pslab_reconcile("--snapshot", str(good), "--dry-run", *common)
    assert dry.returncode == 0, dry.stderr
    assert "vip as of 2026-11-28T09:00:00.000000Z: 10 members now" in dry.stdout
    assert f"  add: {phone(11)}" in dry.stdout
    assert f"  remove: {phone(10)}" in dry.stdout
    assert "dry run: nothing was written" in dry.stdout
    assert "1 page of 100, so 1 call" in dry.stderr
    assert not state.exists()

    truncated = engage_export(tmp_path / "cut.csv", [1, 2, 3, 4])
    refused = pslab_reconcile("--snapshot", str(truncated), *common)
    assert refused.returncode == 1
    assert "would remove 6 of the 10 current members of 'vip' (60%)" in refused.stderr
    assert "Nothing was changed" in refused.stderr
    assert emulator_state(emulator_url)["subscribers"] == before["subscribers"]
    assert emulator_state(emulator_url)["events"] == []

    done = pslab_reconcile("--snapshot", str(good), "--json", *common)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    vip = summary["audiences"]["vip"]
    assert (vip["adds"], vip["removes"], vip["unchanged"], vip["members_before"]) == (1, 1, 9, 10)
    assert (summary["events_posted"], summary["pending"], summary["changed"]) == (2, 0, 2)
    assert summary["snapshot"]["listing_pages"] == 1
    events = emulator_state(emulator_url)["events"]
    assert sorted(event["type"] for event in events) == [
        "Segment_Audience_Entered",
        "Segment_Audience_Exited",
    ]


def test_every_rejected_row_reaches_rejects_out_while_the_summary_counts_them(
    emulator_url: str, tmp_path: Path
) -> None:
    holders = [
        {"phone_number": phone(n), "properties": {"Segment Audiences": ["vip"]}}
        for n in range(1, 6)
    ]
    httpx.post(
        f"{emulator_url}/_emulator/subscribers", json={"subscribers": holders}
    ).raise_for_status()
    bad_rows = 250  # more than the summary keeps in memory
    snapshot = tmp_path / "snapshot.csv"
    rows = ["phone", *(phone(n) for n in range(1, 6)), *(f"bad-{n}" for n in range(bad_rows))]
    snapshot.write_text("\n".join(rows) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.ndjson"

    done = pslab_reconcile(
        *("--snapshot", str(snapshot), "--audience", "vip", "--as-of", AS_OF),
        *("--state", str(tmp_path / "state.sqlite"), "--base-url", emulator_url),
        *("--rejects-out", str(rejects), "--json"),
    )

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["snapshot"]["rows"], summary["snapshot"]["rejected"]) == (255, bad_rows)
    assert summary["rejected"] == bad_rows
    written = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [row["line"] for row in written] == list(range(7, 7 + bad_rows))
    assert all("names no member" in row["reason"] for row in written)
