"""The ledger: dedupe, winners per (identity, audience), the intent journal, one process only."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import StateLockedError
from postscript_audience_lab.sync.ledger import (
    KEEP_REJECTION_BYTES,
    KEEP_REJECTIONS,
    MAX_STORED_EVENT_CHARS,
    PRUNE_MARGIN,
    Counts,
    Identity,
    Ledger,
    RejectionLimits,
    Status,
)
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, Version
from postscript_audience_lab.sync.plan import plan_subscriber
from tests.processes import read_line, stop
from tests.sync.test_engine import event
from tests.sync.world import Crash, Tap, World, crash_on

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
PHONE = Identity("+15555550100", None)


def change(member: bool, minute: int, message_id: str, key: str = "vip") -> AudienceChange:
    version = Version(T0 + timedelta(minutes=minute), message_id)
    return AudienceChange(PHONE.phone, None, key, None, member, version)


Tally = tuple[dict[Status, int], int, int, int]


def recount(db: sqlite3.Connection) -> Tally:
    """What the counters must say, counted from the rows: per status, rejections and their
    bytes, intents."""
    by_status = dict.fromkeys(Status, 0)
    for status, count in db.execute("SELECT status, COUNT(*) FROM winners GROUP BY status"):
        by_status[Status(status)] = count
    rejections, size = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(CAST(event AS BLOB)) "
        "+ length(CAST(reason AS BLOB))), 0) FROM rejections"
    ).fetchone()
    (intents,) = db.execute("SELECT COUNT(*) FROM intents").fetchone()
    return by_status, rejections, size, intents


def counted(counts: Counts) -> Tally:
    return counts.by_status, counts.rejections, counts.rejection_bytes, counts.intents


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


def rejected(number: int, size: int = 100) -> Rejection:
    """A non-audience event, rejected, of about `size` characters stored."""
    return Rejection("not an audience event", {"n": number, "pad": "x" * size}, number)


def test_rejections_past_the_row_limit_drop_the_oldest_and_are_counted(
    state_path: Path,
) -> None:
    with Ledger(state_path, RejectionLimits(rows=100)) as ledger:
        run = ledger.start_run()
        ledger.record([rejected(n) for n in range(1, 1001)], run)
        kept = [row["line"] for row in ledger.rejections(run)]
        counts = ledger.counts()

    assert 100 * (1 - PRUNE_MARGIN) <= len(kept) <= 100
    assert kept == list(range(1001 - len(kept), 1001))  # the latest, in order
    assert (counts.rejections, counts.rejections_dropped) == (len(kept), 1000 - len(kept))


def test_rejections_past_the_byte_limit_drop_the_oldest(state_path: Path) -> None:
    with Ledger(state_path, RejectionLimits(bytes=50_000)) as ledger:
        run = ledger.start_run()
        ledger.record([rejected(n, size=1000) for n in range(1, 501)], run)
        counts = ledger.counts()
        (stored,) = ledger.db.execute(
            "SELECT SUM(length(event) + length(reason)) FROM rejections"
        ).fetchone()

    assert stored == counts.rejection_bytes <= 50_000
    assert counts.rejections + counts.rejections_dropped == 500
    assert counts.rejections >= 40  # about 50,000 / 1,050 fit


def test_a_refusal_counts_as_a_rejection_kept_within_the_limits(state_path: Path) -> None:
    with Ledger(state_path, RejectionLimits(rows=2)) as ledger:
        run = ledger.start_run()
        for number in range(5):
            ledger.record_refusal({"event": number}, "Postscript refused the event", run)
        counts = ledger.counts()
    assert (counts.rejections, counts.rejections_dropped) == (2, 3)


REJECTIONS_PER_ROUND = 30_000  # three times what the defaults keep of them
STATE_FILE_BOUND = 24 * 1024 * 1024  # 16 MiB of text at most, and SQLite's pages around it


def test_rejected_events_leave_the_state_file_bounded_and_reuse_its_free_pages(
    state_path: Path,
) -> None:
    """Rejected events of about 1 KB, as a destination forwarding a whole source sends them
    (100,000 of them made a 108 MB file without a limit): with the defaults, the file stays
    under STATE_FILE_BOUND, and a second round reuses the pages the first freed."""
    sizes = []
    with Ledger(state_path) as ledger:
        for _ in range(2):
            run = ledger.start_run()
            ledger.record((rejected(n, size=1000) for n in range(REJECTIONS_PER_ROUND)), run)
            ledger.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes.append(ledger.file_bytes())
        counts = ledger.counts()

    assert sizes[0] < STATE_FILE_BOUND
    assert sizes[1] <= sizes[0] * 1.05  # the freed pages were used again
    assert counts.rejections <= KEEP_REJECTIONS
    assert counts.rejection_bytes <= KEEP_REJECTION_BYTES
    assert counts.rejections + counts.rejections_dropped == 2 * REJECTIONS_PER_ROUND


@pytest.mark.anyio
async def test_the_counters_agree_with_a_recount_after_every_kind_of_change(
    world: World, state_path: Path
) -> None:
    """Ingest (accepted, duplicate, stale, rejected), drain (applied), a refused PATCH, a
    parked identity unparked and parked again, a crash leaving a journaled intent and its
    resumption, and pruning: after each, the counters say what counting the rows says."""
    full = {f"custom_{index}": index for index in range(50)}  # a 51st property is a 400
    known, crowded, unknown = "+15555550100", "+15555550101", "+15555550199"
    await world.seed({"phone_number": known}, {"phone_number": crowded, "properties": full})
    settings = world.settings(state_path, keep_rejections=3)

    def agrees(engine: Engine) -> Counts:
        counts = engine.ledger.counts()
        assert counted(counts) == recount(engine.ledger.db)
        return counts

    with Engine(settings, world.transport) as engine:
        engine.ingest(
            [
                event(phone=known, message_id="m-1", minute=2),
                event(phone=known, message_id="m-1", minute=2),  # duplicate
                event(phone=known, message_id="m-0", minute=1),  # stale
                event(phone=crowded, message_id="m-2"),  # its PATCH is refused
                event(phone=unknown, message_id="m-3"),  # parked
                *({"type": "track", "messageId": f"t-{n}"} for n in range(5)),  # rejected
            ]
        )
        agrees(engine)
        await engine.drain()
        counts = agrees(engine)
        assert counts.by_status[Status.REFUSED] == counts.by_status[Status.PARKED] == 1
        assert counts.rejections_dropped > 0  # 5 rejected and 1 refused, 3 kept
        engine.ingest([event(phone=known, member=False, minute=5, message_id="m-4")])
        agrees(engine)
        await engine.drain(unpark=True)  # the parked one is pending, then parked again
        agrees(engine)
    crashing = Tap(world.transport, before=crash_on("PATCH", "/api/v2/subscribers"))
    with Engine(settings, crashing) as engine:
        engine.ingest([event(phone=known, minute=9, message_id="m-5")])
        with pytest.raises(Crash):
            await engine.drain()
        assert agrees(engine).intents == 1
    await world.seed({"phone_number": unknown})
    with Engine(settings, world.transport) as engine:
        report = await engine.drain()
        counts = agrees(engine)
    assert (report.resumed, report.pending, report.parked) == (1, 0, 0)
    assert (counts.intents, counts.by_status[Status.DONE]) == (0, 2)  # known and unknown
