"""`pslab sync` against what an adversarial user sends it: nothing stops it or corrupts the state.

Each test runs the real program as a subprocess against a `pslab emulator` process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscript_audience_lab.sync.ledger import MAX_STORED_EVENT_CHARS
from tests.e2e.test_sync_cli import SECRET, emulator_url, pslab_sync, summary
from tests.processes import unwrapped

__all__ = ["emulator_url"]  # the fixture, shared with the other sync e2e tests

PHONE = "+15555550100"
# Reads the program's own peak resident memory as it exits (`lab.bench.child`).
MEASURED = [
    sys.executable,
    "-c",
    "import atexit, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('peak-kb', line.split()[1], file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "from postscript_audience_lab.lab.cli import main\n"
    "main()",
]


def entered(message_id: str, phone: str = PHONE, minute: int = 0) -> str:
    return json.dumps(
        {
            "type": "identify",
            "messageId": message_id,
            "timestamp": f"2024-05-01T12:{minute:02d}:00Z",
            "traits": {"vip": True, "phone": phone},
            "context": {"personas": {"computation_class": "audience", "computation_key": "vip"}},
        }
    )


def seed(emulator_url: str, *phones: str) -> None:
    body = {"subscribers": [{"phone_number": phone} for phone in phones or (PHONE,)]}
    httpx.post(f"{emulator_url}/_emulator/subscribers", json=body).raise_for_status()


def world(emulator_url: str) -> dict[str, Any]:
    response = httpx.get(f"{emulator_url}/_emulator/state")
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


def test_a_run_refused_for_another_shop_leaves_the_state_file_byte_for_byte_unchanged(
    emulator_url: str, tmp_path: Path
) -> None:
    seed(emulator_url)
    state = tmp_path / "s.sqlite"
    assert summary(pslab_sync("--input", "-", "--base-url", emulator_url, "--state", str(state),
                              "--json", stdin=entered("m1")))["applied"] == 1  # fmt: skip
    with sqlite3.connect(state) as db:  # as if the file had been filled for another shop
        db.execute("UPDATE meta SET value = 'shop_other' WHERE key = 'shop'")
    db.close()
    before = state.read_bytes()
    exit_event = entered("m2", minute=5).replace('"vip": true', '"vip": false')

    refused = pslab_sync(
        "--base-url", emulator_url, "--state", str(state), "--json", stdin=exit_event
    )

    assert refused.returncode == 1
    assert "belongs to shop shop_other" in refused.stderr
    assert state.read_bytes() == before
    assert not state.with_name("s.sqlite-wal").exists()
    (subscriber,) = world(emulator_url)["subscribers"]
    assert subscriber["properties"]["Segment Audiences"] == ["vip"]  # the exit never applied


POISON = {
    "an integer of 5,000 digits": '{"type": "identify", "n": ' + "9" * 5000 + "}",
    "JSON nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "an event nested 980 deep": '{"type":"identify","traits":' + '{"a":' * 980 + "1" + "}" * 981,
    "NaN": '{"type": "identify", "timestamp": NaN}',
    "a lone surrogate": '{"type": "identify", "messageId": "\\ud800"}',
    "a year-9999 timestamp": entered("m-future").replace("2024-05-01", "9999-05-01"),
    "a 50 MB batch": '{"batch": [' + ",".join([entered("m-big")] * 180_000) + "]}",
}


def test_poison_lines_are_rejected_with_reasons_and_the_events_around_them_applied(
    emulator_url: str, tmp_path: Path
) -> None:
    seed(emulator_url, PHONE, "+15555550101")
    lines = [entered("m-first"), *POISON.values(), entered("m-last", phone="+15555550101")]
    source = tmp_path / "events.ndjson"
    source.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.ndjson"
    state = tmp_path / "s.sqlite"
    env = {**os.environ, "POSTSCRIPT_SECRET_KEY": SECRET}

    result = subprocess.run(  # noqa: S603 -- our own program
        [*MEASURED, "sync", "--input", str(source), "--base-url", emulator_url,
         "--state", str(state), "--rejects-out", str(rejects), "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip

    report = summary(result)
    assert "Traceback" not in result.stderr
    assert (report["applied"], report["rejected"], report["pending"]) == (2, len(POISON), 0)
    reasons = [json.loads(line)["reason"] for line in rejects.read_text().splitlines()]
    assert len(reasons) == len(POISON)
    assert all(reason for reason in reasons)
    assert max(len(line) for line in rejects.read_text().splitlines()) < 2 * MAX_STORED_EVENT_CHARS
    with sqlite3.connect(state) as db:
        (longest,) = db.execute("SELECT max(length(event)) FROM rejections").fetchone()
    db.close()
    assert longest <= MAX_STORED_EVENT_CHARS
    peak_kb = int(result.stderr.split("peak-kb")[-1].split()[0])
    assert peak_kb < 200 * 1024, f"peak memory {peak_kb / 1024:.0f} MB"


def test_an_unwritable_rejects_file_stops_the_run_before_anything_is_stored(
    emulator_url: str, tmp_path: Path
) -> None:
    seed(emulator_url)
    state = tmp_path / "s.sqlite"

    result = pslab_sync(
        "--base-url", emulator_url, "--state", str(state),
        "--rejects-out", str(tmp_path / "no-such-folder" / "rejects.ndjson"), stdin=entered("m1"),
    )  # fmt: skip

    assert result.returncode == 2
    assert "cannot write --rejects-out" in unwrapped(result.stderr)
    assert not state.exists()
    assert world(emulator_url)["events"] == []


def test_a_failed_run_still_prints_its_json_summary_last(emulator_url: str, tmp_path: Path) -> None:
    seed(emulator_url)
    state = tmp_path / "s.sqlite"
    assert pslab_sync("--base-url", emulator_url, "--state", str(state),
                      stdin=entered("m1")).returncode == 0  # fmt: skip
    faults = {"error_rate": 1.0, "error_statuses": [401]}
    httpx.put(f"{emulator_url}/_emulator/faults", json=faults).raise_for_status()

    result = pslab_sync(
        "--base-url", emulator_url, "--state", str(state), "--json", stdin=entered("m2", minute=1)
    )

    assert result.returncode == 1
    assert "refused the secret key" in unwrapped(result.stderr)
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["api_calls"]["me"] == 1
    assert last["received"] == 0  # the key was refused before anything was stored


def test_a_dry_run_leaves_no_wal_or_shm_file_and_no_lock_note_behind(
    emulator_url: str, tmp_path: Path
) -> None:
    seed(emulator_url)
    state = tmp_path / "s.sqlite"
    assert pslab_sync("--base-url", emulator_url, "--state", str(state),
                      stdin=entered("m1")).returncode == 0  # fmt: skip
    before = sorted(path.name for path in tmp_path.iterdir())
    note = state.with_name("s.sqlite.lock").read_text()

    result = pslab_sync(
        "--base-url", emulator_url, "--state", str(state), "--dry-run",
        stdin=entered("m2", minute=1).replace('"vip": true', '"vip": false'),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == before
    assert state.with_name("s.sqlite.lock").read_text() == note


def test_the_key_can_come_from_a_file_and_a_key_on_the_command_line_is_warned_about(
    emulator_url: str, tmp_path: Path
) -> None:
    seed(emulator_url)
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")

    common = ["--base-url", emulator_url]

    from_file = pslab_sync(
        *common, "--state", str(tmp_path / "a.sqlite"), "--secret-key-file", str(key_file),
        stdin=entered("m1"), key=None,
    )  # fmt: skip
    on_command_line = pslab_sync(
        *common, "--state", str(tmp_path / "b.sqlite"), "--secret-key", SECRET,
        stdin=entered("m2"), key=None,
    )  # fmt: skip

    assert from_file.returncode == 0, from_file.stderr
    assert "warning" not in from_file.stderr
    assert on_command_line.returncode == 0, on_command_line.stderr
    assert "visible to every user" in on_command_line.stderr
    assert SECRET not in on_command_line.stderr + on_command_line.stdout


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_key_appears_in_no_output_state_or_rejects_file(
    emulator_url: str, tmp_path: Path, dry_run: bool
) -> None:
    seed(emulator_url)
    state, rejects = tmp_path / "s.sqlite", tmp_path / "rejects.ndjson"
    lines = "\n".join([entered("m1"), '{"type": "identify"}'])
    args = ["--base-url", emulator_url, "--state", str(state), "--rejects-out", str(rejects)]

    good = pslab_sync(*args, "--json", *(["--dry-run"] if dry_run else []), stdin=lines)
    refused = pslab_sync(*args, stdin=entered("m3"), key="sk_wrong_" + SECRET[::-1])

    assert good.returncode == 0, good.stderr
    assert refused.returncode == 1
    written = [good.stdout, good.stderr, refused.stdout, refused.stderr]
    files = [path.read_bytes() for path in tmp_path.iterdir() if path.is_file()]
    assert all(SECRET not in text and SECRET[::-1] not in text for text in written)
    assert files
    assert all(SECRET.encode() not in data for data in files)


def test_a_write_postscript_refuses_is_set_aside_and_the_run_exits_0_saying_so(
    emulator_url: str, tmp_path: Path
) -> None:
    """Three audience keys of 400 KB for one shopper make a PATCH over Postscript's 1 MiB (413,
    every time), each line under the 1 MiB intake limit: the 19 good events around them are
    applied, the refusal is in the summary, and the run exits 0."""
    others = [f"+1555555{n:04d}" for n in range(1, 20)]
    seed(emulator_url, PHONE, *others)
    huge = [json.loads(entered(f"m-huge-{n}")) for n in range(3)]
    for n, event in enumerate(huge):
        key = ("abc"[n]) * 400_000
        event["traits"] = {key: True, "phone": PHONE}
        event["context"]["personas"]["computation_key"] = key
    lines = [*map(json.dumps, huge), *(entered(f"m-{phone}", phone) for phone in others)]
    args = ("--base-url", emulator_url, "--state", str(tmp_path / "s.sqlite"), "--json")

    result = summary(pslab_sync(*args, stdin="\n".join(lines) + "\n"))
    again = summary(pslab_sync(*args))

    assert (result["refused"], result["applied"], result["pending"]) == (3, 19, 0), result
    assert again["api_calls"].get("subscribers.patch", 0) == 0  # set aside, not tried again
    holders = [s for s in world(emulator_url)["subscribers"] if s["phone_number"] in others]
    assert all(s["properties"]["Segment Audiences"] == ["vip"] for s in holders)
