"""`pslab sync` as a user runs it: subprocesses against a `pslab emulator` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.segment.workload import build_workload
from tests.processes import running_emulator, stop, unwrapped

SECRET = "sk_e2e_not_a_real_key"
PSLAB = [sys.executable, "-c", "from postscript_audience_lab.lab.cli import main; main()"]


@pytest.fixture
def emulator_url(tmp_path: Path) -> Iterator[str]:
    """A `pslab emulator` process on a free loopback port (rate limit on, as Postscript's)."""
    with running_emulator("--secret-key", SECRET, "--rate-limit", "100") as (base_url, _):
        yield base_url


def pslab_sync(
    *args: str, stdin: str = "", key: str | None = SECRET
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTSCRIPT_SECRET_KEY"}
    if key is not None:
        env["POSTSCRIPT_SECRET_KEY"] = key
    return subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, "sync", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    last: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return last


def test_several_runs_on_one_state_file_converge_the_emulator(
    emulator_url: str, tmp_path: Path
) -> None:
    workload = build_workload("quick", users=60, unseeded_rate=0.2, seed=3)
    seed = {"subscribers": workload.subscribers}
    httpx.post(f"{emulator_url}/_emulator/subscribers", json=seed).raise_for_status()
    lines = list(workload.iter_lines())
    thirds = [lines[: len(lines) // 3], lines[len(lines) // 3 : 2 * len(lines) // 3]]
    thirds.append([*lines[2 * len(lines) // 3 :], '{"not": "closed"', ""])
    state = tmp_path / "state.sqlite"
    rejects = tmp_path / "rejects.ndjson"
    common = ["--base-url", emulator_url, "--state", str(state), "--rate-limit", "90", "--json"]

    reports = []
    for number, part in enumerate(thirds):
        source = tmp_path / f"part{number}.ndjson"
        source.write_text("\n".join(part) + "\n")
        reports.append(
            summary(pslab_sync("--input", str(source), "--rejects-out", str(rejects), *common))
        )
    again = summary(pslab_sync("--input", "-", *common, stdin="\n".join(lines)))

    assert sum(report["received"] for report in reports) == len(lines) + 1
    assert [report["pending"] for report in reports] == [0, 0, 0]
    assert reports[-1]["rejected"] == 1
    assert "line" in json.loads(rejects.read_text().splitlines()[0])["reason"]
    assert again["duplicates"] == len(lines)
    # a full re-delivery writes nothing; only the parked identities are looked up again
    assert again["parked"] > 0
    assert again["api_calls"]["total"] == again["api_calls"]["subscribers.list"] + 1  # + `me`

    state_now = httpx.get(f"{emulator_url}/_emulator/state").json()
    by_identity: dict[str, dict[str, Any]] = {}
    for subscriber in state_now["subscribers"]:
        for identity in (subscriber.get("phone_number"), subscriber.get("email")):
            if identity:
                by_identity[identity] = subscriber
    for row in workload.expected:
        found = by_identity[row["phone_number"] or row["email"]]
        audiences = (found.get("properties") or {}).get("Segment Audiences") or []
        assert (row["audience_key"] in audiences) is row["member"]
    entered = [e for e in state_now["events"] if e["type"] == "Segment_Audience_Entered"]
    exited = [e for e in state_now["events"] if e["type"] == "Segment_Audience_Exited"]
    assert len(entered) - len(exited) == sum(1 for row in workload.expected if row["member"])


def test_a_refused_key_exits_non_zero_with_one_line_and_never_prints_the_key(
    emulator_url: str, tmp_path: Path
) -> None:
    _seed_one_subscriber(emulator_url)
    event = {
        "type": "identify",
        "messageId": "m1",
        "timestamp": "2024-05-01T12:00:00Z",
        "traits": {"vip": True, "phone": "+15555550100"},
        "context": {"personas": {"computation_class": "audience", "computation_key": "vip"}},
    }
    wrong = "sk_wrong_secret_value"
    result = pslab_sync(
        "--base-url", emulator_url, "--state", str(tmp_path / "s.sqlite"),
        stdin=json.dumps(event), key=wrong,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "secret key" in unwrapped(result.stderr)
    assert wrong not in result.stdout + result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no state file left behind


def test_a_missing_key_is_explained(tmp_path: Path) -> None:
    result = pslab_sync("--state", str(tmp_path / "s.sqlite"), key=None)
    assert result.returncode == 2
    assert "POSTSCRIPT_SECRET_KEY" in unwrapped(result.stderr)


def test_an_unknown_default_region_is_a_usage_error(tmp_path: Path) -> None:
    result = pslab_sync("--state", str(tmp_path / "s.sqlite"), "--default-region", "USA")
    assert result.returncode == 2
    assert "--default-region 'USA' is not a region code" in unwrapped(result.stderr)
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--rate-limit", "-1"),
        ("--timeout", "0"),
        ("--lookup-batch", "51"),
        ("--keep-rejections", "-1"),
        ("--keep-rejection-bytes", "-1"),
    ],
)
def test_out_of_range_pacing_options_are_usage_errors(
    tmp_path: Path, flag: str, value: str
) -> None:
    result = pslab_sync("--state", str(tmp_path / "s.sqlite"), flag, value)
    assert result.returncode == 2
    assert f"Invalid value for '{flag}'" in unwrapped(result.stderr)
    assert not (tmp_path / "s.sqlite").exists()


def test_a_dry_run_prints_each_planned_write_and_changes_nothing(
    emulator_url: str, tmp_path: Path
) -> None:
    _seed_one_subscriber(emulator_url)
    event = {
        "type": "track",
        "messageId": "m1",
        "timestamp": "2024-05-01T12:00:00Z",
        "properties": {"vip": "TRUE"},
        "context": {
            "personas": {"computation_class": "audience", "computation_key": "vip"},
            "traits": {"phone": "(555) 555-0100"},
        },
    }
    state = tmp_path / "s.sqlite"
    result = pslab_sync(
        "--base-url", emulator_url, "--state", str(state), "--dry-run", "--json",
        stdin=json.dumps(event),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    planned, report = (json.loads(line) for line in result.stdout.strip().splitlines())
    assert planned["patch"] == {"Segment Audiences": ["vip"]}
    assert [e["type"] for e in planned["events"]] == ["Segment_Audience_Entered"]
    assert report["dry_run"] is True
    assert not state.exists()
    world = httpx.get(f"{emulator_url}/_emulator/state").json()
    assert world["events"] == []
    assert not (world["subscribers"][0].get("properties") or {}).get("Segment Audiences")


def test_rejections_past_keep_rejections_are_dropped_oldest_first_and_counted(
    emulator_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "events.ndjson"
    source.write_text("".join(f'{{"type": "track", "messageId": "t{n}"}}\n' for n in range(20)))
    rejects = tmp_path / "rejects.ndjson"
    result = pslab_sync(
        "--input", str(source), "--base-url", emulator_url, "--state", str(tmp_path / "s.sqlite"),
        "--rejects-out", str(rejects), "--keep-rejections", "5", "--json",
    )  # fmt: skip
    report = summary(result)
    assert (report["rejected"], report["rejections_dropped"]) == (20, 15)
    kept = [json.loads(line)["line"] for line in rejects.read_text().splitlines()]
    assert kept == [16, 17, 18, 19, 20]


def test_a_line_that_is_not_utf8_is_rejected_and_the_rest_is_synced(
    emulator_url: str, tmp_path: Path
) -> None:
    _seed_one_subscriber(emulator_url)
    event = {
        "type": "identify",
        "messageId": "m1",
        "timestamp": "2024-05-01T12:00:00Z",
        "traits": {"vip": True, "phone": "+15555550100", "name": "Zoë"},
        "context": {"personas": {"computation_class": "audience", "computation_key": "vip"}},
    }
    source = tmp_path / "events.ndjson"
    source.write_bytes(b'{"type": "identify", "name": "Zo\xeb"}\n' + json.dumps(event).encode())
    rejects = tmp_path / "rejects.ndjson"
    result = pslab_sync(
        "--input", str(source), "--base-url", emulator_url, "--state", str(tmp_path / "s.sqlite"),
        "--rejects-out", str(rejects), "--json",
    )  # fmt: skip
    report = summary(result)
    assert (report["rejected"], report["applied"], report["pending"]) == (1, 1, 0)
    (rejected,) = (json.loads(line) for line in rejects.read_text().splitlines())
    assert "line 1 is not UTF-8" in rejected["reason"]
    (subscriber,) = httpx.get(f"{emulator_url}/_emulator/state").json()["subscribers"]
    assert subscriber["properties"]["Segment Audiences"] == ["vip"]


def test_a_second_sync_on_a_state_file_in_use_is_refused(emulator_url: str, tmp_path: Path) -> None:
    phones = [f"+1555555{index:04d}" for index in range(6)]
    httpx.post(
        f"{emulator_url}/_emulator/subscribers",
        json={"subscribers": [{"phone_number": phone} for phone in phones]},
    ).raise_for_status()
    events = "\n".join(
        json.dumps(
            {
                "type": "identify",
                "messageId": f"m{index}",
                "timestamp": "2024-05-01T12:00:00Z",
                "traits": {"vip": True, "phone": phone},
                "context": {
                    "personas": {"computation_class": "audience", "computation_key": "vip"}
                },
            }
        )
        for index, phone in enumerate(phones)
    )
    state = tmp_path / "s.sqlite"
    args = ["sync", "--base-url", emulator_url, "--state", str(state)]
    env = {**os.environ, "POSTSCRIPT_SECRET_KEY": SECRET}
    # The first run reads its events from a pipe this test keeps open: it holds the state
    # file while it waits for them, for as long as the second run needs to be refused.
    first = subprocess.Popen(  # noqa: S603 -- our own program
        [*PSLAB, *args, "--input", "-", "--json"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lock = tmp_path / "s.sqlite.lock"
        for _ in range(600):  # wait until the first run holds the lock (its pid is in the file)
            if lock.exists() and lock.read_text().split()[:1] == [str(first.pid)]:
                break
            if first.poll() is not None:
                pytest.fail(f"the first run exited ({first.returncode}) before holding the lock")
            time.sleep(0.05)
        else:
            pytest.fail("the first run did not hold the lock within 30 s")
        second = pslab_sync(*args[1:], "--input", "-", stdin=events)
        assert second.returncode == 1
        assert f"in use by another pslab sync (pid {first.pid})" in second.stderr
        output, _ = first.communicate(events, timeout=60)
    finally:
        stop(first)  # only does anything when the lines above failed
    assert first.returncode == 0
    applied = json.loads(output.strip().splitlines()[-1])
    assert applied["pending"] == 0
    assert applied["api_calls"]["subscribers.patch"] == len(phones)


def _seed_one_subscriber(emulator_url: str) -> None:
    """The subscriber the single-event tests write to: phone +1 555 555 0100."""
    httpx.post(
        f"{emulator_url}/_emulator/subscribers",
        json={"subscribers": [{"phone_number": "+15555550100"}]},
    ).raise_for_status()


def test_a_sigterm_mid_drain_exits_143_after_the_calls_in_flight_and_repeats_nothing(
    emulator_url: str, tmp_path: Path
) -> None:
    """A scheduler stopping the job: the run waits for the answers to what it sent, journals
    them (a subscriber PATCHed but not yet told keeps its events journaled), says how to
    resume, and the rerun finishes without posting any event twice."""
    workload = build_workload("quick", users=40, seed=5)
    seed = {"subscribers": workload.subscribers}
    httpx.post(f"{emulator_url}/_emulator/subscribers", json=seed).raise_for_status()
    events = tmp_path / "events.ndjson"
    events.write_text("".join(line + "\n" for line in workload.iter_lines()))
    state = str(tmp_path / "state.sqlite")
    env = {**os.environ, "POSTSCRIPT_SECRET_KEY": SECRET}
    args = ["sync", "--base-url", emulator_url, "--state", state, "--json"]
    process = subprocess.Popen(  # noqa: S603 -- our own program
        [*PSLAB, *args, "--rate-limit", "8", "--input", str(events)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _posted_events(emulator_url):
            assert process.poll() is None, "the run ended before it posted an event"
            assert time.monotonic() < deadline, "no event was posted in 60 s"
            time.sleep(0.05)
        process.terminate()
        out, err = process.communicate(timeout=30)
    finally:
        stop(process)
    rerun = pslab_sync(*args[1:], "--rate-limit", "0")
    state_after = httpx.get(f"{emulator_url}/_emulator/state").json()

    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in unwrapped(err)
    assert json.loads(out.strip().splitlines()[-1])["pending"] > 0
    assert summary(rerun)["pending"] == 0
    keys = [
        (item["subscriber_id"], item["type"], item["properties"]["Segment Audience Key"],
         item["occurred_at"])
        for item in state_after["events"]
    ]  # fmt: skip
    assert len(keys) == len(set(keys)), "an event was posted twice"


def _posted_events(base_url: str) -> int:
    return len(httpx.get(f"{base_url}/_emulator/state").json()["events"])
