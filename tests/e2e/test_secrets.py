"""A recognisable key, given to every `pslab` command that takes one, is found nowhere after.

Every command runs as a user runs it (a subprocess, the key in the environment),
and its output, every file it wrote and the emulator's own output are searched
for the key, its reverse (a careless transform) and its Base64 form (a Basic header).
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import running_emulator, stop

pytestmark = pytest.mark.slow

KEY = "sk_live_Recognisable0Secret0Key0xyzzy"
PHONE = "+14155552671"
PSLAB = [sys.executable, "-m", "postscript_audience_lab"]
FORMS = (KEY, KEY[::-1], base64.b64encode(f"{KEY}:".encode()).decode())


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`pslab emulator` expecting KEY (from its environment variable), with one subscriber."""
    env = {**os.environ, "PSLAB_EMULATOR_SECRET_KEY": KEY}
    state = tmp_path / "emulator-state.sqlite"
    with running_emulator("--rate-limit", "0", "--state", str(state), env=env) as running:
        seed = {"subscribers": [{"phone_number": PHONE, "email": "test.person@gmail.test"}]}
        httpx.post(f"{running[0]}/_emulator/subscribers", json=seed).raise_for_status()
        yield running


PRIVATE = ("s.sqlite", "rejects.ndjson")  # the state file and the rejected events


def run(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTSCRIPT_SECRET_KEY": KEY, "POSTSCRIPT_TEST_PHONE": PHONE}
    return subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd,
        timeout=300, check=False,
    )  # fmt: skip


def test_no_command_writes_the_key_anywhere(
    emulator: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base_url, process = emulator
    work = tmp_path / "work"
    work.mkdir()
    event = (
        '{"type":"identify","messageId":"m1","timestamp":"2024-05-01T12:00:00Z",'
        f'"traits":{{"vip":true,"phone":"{PHONE}"}},'
        '"context":{"personas":{"computation_class":"audience","computation_key":"vip"}}}'
    )
    sync_args = ["sync", "--base-url", base_url, "--state", "s.sqlite", "--json"]
    results = {
        "sync": run(*sync_args, "--rejects-out", "rejects.ndjson", cwd=work, stdin=event + "\n{}"),
        "sync --dry-run": run(*sync_args, "--dry-run", cwd=work, stdin=event),
        "contracts verify --live": run(
            "contracts", "verify", "--live", "--base-url", base_url, "--json", cwd=work
        ),
        "contracts drift": run("contracts", "drift", "--base-url", base_url, cwd=work),
        "contracts record": run(
            "contracts",
            "record",
            "--base-url",
            base_url,
            "--out",
            str(work / "recorded"),
            cwd=work,
        ),
    }
    stop(process)
    # The files that name people are their owner's alone, whatever the umask lets others read.
    assert {name: stat.S_IMODE((work / name).stat().st_mode) for name in PRIVATE} == dict.fromkeys(
        PRIVATE, 0o600
    )
    emulator_output = process.stdout.read() if process.stdout else ""

    assert results["sync"].returncode == 0, results["sync"].stderr
    assert results["contracts verify --live"].returncode in (0, 1), results[
        "contracts verify --live"
    ].stderr
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.suffix == ".json" for path in files)  # the recording wrote contracts
    texts = {name: r.stdout + r.stderr for name, r in results.items()}
    texts["emulator"] = emulator_output
    found = [(where, form) for where, text in texts.items() for form in FORMS if form in text] + [
        (str(path), form) for path in files for form in FORMS if form.encode() in path.read_bytes()
    ]
    assert found == []
