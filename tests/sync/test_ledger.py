"""The ledger: dedupe, winners per (identity, audience), the intent journal, one process only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postscript_audience_lab.sync.errors import StateLockedError
from postscript_audience_lab.sync.ledger import (
    KEEP_REJECTIONS_OF_RUNS,
    MAX_STORED_EVENT_CHARS,
    Identity,
    Ledger,
)
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, Version
from postscript_audience_lab.sync.plan import plan_subscriber
from tests.processes import read_line, stop

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
PHONE = Identity("+15555550100", None)


def change(member: bool, minute: int, message_id: str, key: str = "vip") -> AudienceChange:
    version = Version(T0 + timedelta(minutes=minute), message_id)
    return AudienceChange(PHONE.phone, None, key, None, member, version)


def test_a_repeated_message_id_is_a_duplicate_even_in_a_later_run(state_path: Path) -> None:
    with Ledger(state_path) as ledger:
        first = ledger.record([change(True, 1, "m1"), change(True, 1, "m1")], ledger.start_run())
    with Ledger(state_path) as ledger:
        again = ledger.record([change(True, 1, "m1")], ledger.start_run())
    assert (first.accepted, first.duplicates) == (1, 1)
    assert (again.accepted, again.duplicates) == (0, 1)


def test_only_the_greatest_version_per_identity_and_audience_stays_pending(
    state_path: Path,
) -> None:
    with Ledger(state_path) as ledger:
        counts = ledger.record(
            [change(True, 5, "m5"), change(False, 3, "m3"), change(False, 5, "m4")],
            ledger.start_run(),
        )
        (pending,) = ledger.pending_changes([PHONE])
    assert (counts.accepted, counts.stale) == (1, 2)
    assert pending.version.message_id == "m5"
    assert pending.member is True


def test_a_version_before_year_1000_is_ordered_as_a_time_and_read_back(state_path: Path) -> None:
    early = Version(datetime(999, 1, 1, tzinfo=UTC), "m-early")
    with Ledger(state_path) as ledger:
        counts = ledger.record(
            [change(False, 0, "m1"), AudienceChange(PHONE.phone, None, "vip", None, True, early)],
            ledger.start_run(),
        )
        (pending,) = ledger.pending_changes([PHONE])
    assert (counts.accepted, counts.stale) == (1, 1)
    assert pending.version.message_id == "m1"


def test_rejections_are_kept_with_their_reason_and_line(state_path: Path) -> None:
    with Ledger(state_path) as ledger:
        run = ledger.start_run()
        ledger.record([Rejection("no timestamp", {"type": "track"}, 7)], run)
        assert list(ledger.rejections(run)) == [
            {"line": 7, "reason": "no timestamp", "event": {"type": "track"}}
        ]


def test_parked_changes_become_pending_again_when_unparked(state_path: Path) -> None:
    with Ledger(state_path) as ledger:
        ledger.record([change(True, 1, "m1")], ledger.start_run())
        assert ledger.park([PHONE]) == 1
        assert list(ledger.pending_identities()) == []
        assert ledger.unpark() == 1
        assert list(ledger.pending_identities()) == [PHONE]


def test_pending_identities_are_listed_once_each_across_pages(state_path: Path) -> None:
    phones = [f"+1555555{index:04d}" for index in range(7)]
    with Ledger(state_path) as ledger:
        ledger.record(
            [
                AudienceChange(phone, None, key, None, True, Version(T0, f"{phone}{key}"))
                for phone in phones
                for key in ("a", "b")
            ],
            ledger.start_run(),
        )
        listed = [identity.phone for identity in ledger.pending_identities(page=3)]
    assert listed == phones


def test_an_intent_survives_a_restart_with_its_progress(state_path: Path) -> None:
    subscriber = {"id": "s_1", "properties": {}}
    plan = plan_subscriber(subscriber, [change(True, 1, "m1"), change(False, 0, "m0")])
    with Ledger(state_path) as ledger:
        ledger.record([change(True, 1, "m1")], ledger.start_run())
        intent_id = ledger.begin_intent(plan)
        ledger.mark_patched(intent_id)
        ledger.mark_posted(intent_id, 0)
    with Ledger(state_path) as ledger:
        (intent,) = ledger.unfinished_intents()
        assert intent.subscriber_id == "s_1"
        assert intent.patched
        assert intent.patch == plan.patch_properties
        assert [(seq, posted) for seq, _, posted in intent.events] == [(0, True)]
        assert [winner.version.message_id for winner in intent.winners] == ["m1"]
        assert [stale.version.message_id for stale in intent.superseded] == ["m0"]
        ledger.settle(intent.subscriber_id, intent.winners, intent.superseded, intent.id)
        assert ledger.unfinished_intents() == []
        assert ledger.applied_versions("s_1") == {"vip": Version(T0 + timedelta(minutes=1), "m1")}
        assert list(ledger.pending_identities()) == []


def test_settling_an_old_version_leaves_a_newer_pending_change_pending(state_path: Path) -> None:
    with Ledger(state_path) as ledger:
        run = ledger.start_run()
        ledger.record([change(True, 1, "m1")], run)
        (old,) = ledger.pending_changes([PHONE])
        ledger.record([change(False, 2, "m2")], run)
        ledger.settle("s_1", [old])
        (still,) = ledger.pending_changes([PHONE])
    assert still.version.message_id == "m2"


def test_a_second_ledger_on_the_same_file_is_refused(state_path: Path) -> None:
    with Ledger(state_path), pytest.raises(StateLockedError, match="in use by another"):
        Ledger(state_path).open()
    with Ledger(state_path):  # released on close
        pass


def test_a_second_process_on_the_same_state_file_is_refused(state_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from postscript_audience_lab.sync.ledger import Ledger
        sys.argv[1:] = ["serve"]  # as `pslab serve` would hold it
        with Ledger(Path({str(state_path)!r})):
            print("locked", flush=True)
            sys.stdin.readline()
        """
    )
    process = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(process, timeout=30).strip() == "locked"
        with pytest.raises(StateLockedError, match=rf"another pslab serve \(pid {process.pid}\)"):
            Ledger(state_path).open()
        process.communicate("done\n", timeout=30)
    finally:
        stop(process, signal.SIGKILL)  # only does anything when the lines above failed
    with Ledger(state_path):  # the lock went with the process
        pass


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_ledger_reaching_a_state_file_in_use_through_a_link_is_refused(
    state_path: Path, link: str
) -> None:
    with Ledger(state_path):
        other = state_path.with_name("other-name.sqlite")
        if link == "symlink":
            other.symlink_to(state_path)
        else:
            os.link(state_path, other)
        with pytest.raises(StateLockedError, match="in use by another"):
            Ledger(other).open()
    with Ledger(other):  # released on close, whichever name is used next
        pass


def test_stored_rejections_are_bounded_in_size_and_depth(state_path: Path) -> None:
    huge = {"blob": "x" * 5_000_000}
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with Ledger(state_path) as ledger:
        run = ledger.start_run()
        ledger.record([Rejection("too big", huge, 1), Rejection("too deep", deep, 2)], run)
        stored = list(ledger.rejections(run))
        (longest,) = ledger.db.execute("SELECT max(length(event)) FROM rejections").fetchone()

    assert longest <= MAX_STORED_EVENT_CHARS
    assert stored[0]["event"]["characters"] > 5_000_000
    assert "nested too deep" in stored[1]["event"]["unstorable"]


def test_rejections_of_old_runs_are_pruned_when_a_run_starts(state_path: Path) -> None:
    with Ledger(state_path) as ledger:
        first = ledger.start_run()
        ledger.record([Rejection("bad", {"n": 1}, 1)], first)
        for _ in range(KEEP_REJECTIONS_OF_RUNS - 1):
            ledger.start_run()
        assert list(ledger.rejections(first))  # still among the latest runs
        ledger.start_run()

        assert list(ledger.rejections(first)) == []
