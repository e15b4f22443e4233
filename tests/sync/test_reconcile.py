"""`pslab reconcile` against the in-process emulator: repair, backfill, guards, versions."""

from __future__ import annotations

import itertools
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import ReconcileRefusedError
from postscript_audience_lab.sync.ledger import Identity
from postscript_audience_lab.sync.plan import ENTERED, EXITED
from postscript_audience_lab.sync.reconcile import floor_version, row_version
from tests.sync.reconciling import reconcile, snapshot_of
from tests.sync.world import Crash, Tap, World, audiences_of, by_identity, crash_on

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
AS_OF = T0 + timedelta(hours=1)
_ids = itertools.count()


def phone(number: int) -> str:
    return f"+1555555{number:04d}"


def event(number: int, *, member: bool, minutes: int, key: str = "vip") -> dict[str, Any]:
    """An Engage identify event for subscriber `number`, `minutes` after T0."""
    return {
        "type": "identify",
        "messageId": f"msg-{next(_ids)}",
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "traits": {key: member, "phone": phone(number)},
        "context": {"personas": {"computation_class": "audience", "computation_key": key}},
    }


async def seed(world: World, numbers: range, audiences: list[str]) -> None:
    await world.seed(
        *(
            {"phone_number": phone(n), "properties": {"Segment Audiences": audiences}}
            for n in numbers
        )
    )


async def memberships(world: World, key: str = "vip") -> set[int]:
    state = await world.state()
    return {
        int(str(subscriber["phone_number"])[-4:])
        for subscriber in state["subscribers"]
        if key in audiences_of(subscriber)
    }


async def posted(world: World) -> list[tuple[str, int]]:
    """The events posted, as (type, subscriber number), sorted."""
    state = await world.state()
    number_of = {str(s["id"]): int(str(s["phone_number"])[-4:]) for s in state["subscribers"]}
    return sorted((event["type"], number_of[event["subscriber_id"]]) for event in state["events"])


def vip(*numbers: int) -> list[tuple[str, str | None, str | None]]:
    return [("vip", phone(n), None) for n in numbers]


async def test_a_member_left_in_after_lost_events_is_removed_and_one_missing_is_added(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 7), [])
    joined = [event(n, member=True, minutes=n) for n in range(1, 6)]
    await world.sync(state_path, joined)  # 5's "exited" and 6's "entered" are lost (outage)
    assert await posted(world) == [(ENTERED, n) for n in range(1, 6)]
    snapshot = snapshot_of(vip(1, 2, 3, 4, 6))

    planned, report = await reconcile(world, state_path, snapshot, AS_OF)

    plan = planned.plans[0]
    assert (len(plan.adds), len(plan.removes), plan.unchanged) == (1, 1, 4)
    assert await memberships(world) == {1, 2, 3, 4, 6}
    assert await posted(world) == sorted(
        [*((ENTERED, n) for n in range(1, 7)), (EXITED, 5)]
    )  # one Exited for 5, one Entered for 6, nothing for the others
    assert (report.pending, report.changed, report.events_posted) == (0, 2, 2)
    assert planned.pages == 1  # 6 subscribers: one page of 100

    again, report = await reconcile(world, state_path, snapshot, AS_OF)
    rerun = again.plans[0]
    assert (len(rerun.adds), len(rerun.removes), rerun.unchanged, rerun.newer) == (0, 0, 5, 0)
    assert (report.changed, report.events_posted) == (0, 0)


async def test_a_reconcile_that_crashed_mid_write_finishes_on_rerun_without_repeating_events(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 6), ["vip"])
    await seed(world, range(6, 7), [])
    snapshot = snapshot_of(vip(1, 2, 3, 4, 6))
    crashing = Tap(world.transport, before=crash_on("POST", "/api/v2/events"))
    with pytest.raises(Crash):
        await reconcile(world, state_path, snapshot, AS_OF, transport=crashing)

    _, report = await reconcile(world, state_path, snapshot, AS_OF)

    assert (report.resumed, report.pending) == (1, 0)
    assert await memberships(world) == {1, 2, 3, 4, 6}
    assert await posted(world) == [(ENTERED, 6), (EXITED, 5)]


async def test_a_reconcile_killed_after_storing_its_changes_refuses_another_snapshot_of_its_instant(
    world: World, state_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(world, range(1, 11), ["vip"])
    store = Engine.ingest_changes

    def killed_once_stored(self: Engine, results: Any) -> Any:
        store(self, results)
        raise Crash("killed after storing the snapshot's changes")

    monkeypatch.setattr(Engine, "ingest_changes", killed_once_stored)
    with pytest.raises(Crash):  # a bad export: would remove 9 and 10
        await reconcile(world, state_path, snapshot_of(vip(*range(1, 9))), AS_OF)
    monkeypatch.undo()
    corrected = snapshot_of(vip(*range(1, 11)))

    with pytest.raises(ReconcileRefusedError, match="different snapshot of 'vip' as of"):
        await reconcile(world, state_path, corrected, AS_OF)
    assert await memberships(world) == set(range(1, 11))  # never "unchanged" with removals

    _, report = await reconcile(world, state_path, corrected, AS_OF + timedelta(seconds=1))
    assert await memberships(world) == set(range(1, 11))  # the later export outranks the leftovers
    assert (report.pending, report.events_posted) == (0, 0)
    assert await posted(world) == []


async def test_a_truncated_snapshot_that_would_remove_60_percent_is_refused_and_changes_nothing(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 11), ["vip", "legacy"])
    before = await world.state()
    snapshot = snapshot_of(vip(1, 2, 3, 4))

    with pytest.raises(ReconcileRefusedError) as refused:
        await reconcile(world, state_path, snapshot, AS_OF)

    message = str(refused.value)
    assert "remove 6 of the 10 current members of 'vip' (60%)" in message
    assert "--max-removal-share 20%" in message
    assert "truncated" in message
    assert "Nothing was changed" in message
    after = await world.state()
    assert after["subscribers"] == before["subscribers"]
    assert after["events"] == []
    with sqlite3.connect(state_path) as db:
        assert db.execute("SELECT COUNT(*) FROM winners").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM floors").fetchone() == (0,)


async def test_the_removal_guard_can_be_raised_on_purpose(world: World, state_path: Path) -> None:
    await seed(world, range(1, 11), ["vip"])
    await reconcile(world, state_path, snapshot_of(vip(1, 2, 3, 4)), AS_OF, max_removal_share=0.6)
    assert await memberships(world) == {1, 2, 3, 4}


async def test_a_dry_run_writes_nothing_and_lists_adds_and_removes(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 4), ["vip"])
    await seed(world, range(4, 6), [])
    before = await world.state()

    planned, report = await reconcile(
        world, state_path, snapshot_of(vip(1, 2, 4, 5, 9)), AS_OF, dry_run=True
    )

    summary = planned.as_dict(show=10)["audiences"]["vip"]
    assert summary["first_adds"] == [phone(4), phone(5)]
    assert summary["first_removes"] == [phone(3)]
    assert summary["first_unknown"] == [phone(9)]
    assert (summary["adds"], summary["removes"], summary["unchanged"]) == (2, 1, 2)
    assert (summary["members_before"], summary["removal_share"]) == (3, 0.3333)
    assert await world.state() == before
    assert report.api_calls["subscribers.patch"] == report.api_calls["events.create"] == 0
    assert not os.path.exists(state_path)  # noqa: ASYNC240 -- a one-off check in a test


async def test_an_empty_snapshot_of_a_named_audience_is_refused_unless_allowed(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 4), ["vip"])
    empty = snapshot_of([], audiences=["vip"])
    with pytest.raises(ReconcileRefusedError, match=r"names no member of 'vip'.*--allow-empty"):
        await reconcile(world, state_path, empty, AS_OF)
    assert await memberships(world) == {1, 2, 3}

    await reconcile(world, state_path, empty, AS_OF, allow_empty=True)
    assert await memberships(world) == set()


async def test_an_event_newer_than_the_snapshot_wins_over_it_and_an_older_one_loses(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 7), ["vip"])
    snapshot = snapshot_of(vip(1, 2, 3, 4, 5))  # 6 is out as of AS_OF (60 min after T0)
    newer_out = event(1, member=False, minutes=90)  # applied before the reconcile
    await world.sync(state_path, [newer_out])

    planned, _ = await reconcile(world, state_path, snapshot, AS_OF)
    assert planned.plans[0].newer == 1  # 1 stays out: its event is newer than the snapshot
    assert await memberships(world) == {2, 3, 4, 5}

    late = [event(6, member=True, minutes=30), event(2, member=False, minutes=59)]
    report = await world.sync(state_path, late)  # older than the snapshot: they lose
    assert (report.stale, report.changed) == (2, 0)
    assert await memberships(world) == {2, 3, 4, 5}

    await world.sync(state_path, [event(6, member=True, minutes=61)])  # newer: it wins
    assert await memberships(world) == {2, 3, 4, 5, 6}


async def test_a_subscriber_the_snapshot_names_before_it_exists_parks_then_joins(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 3), ["vip"])
    _, report = await reconcile(world, state_path, snapshot_of(vip(1, 2, 3)), AS_OF)
    assert (report.parked, report.parked_identities) == (1, 1)

    await seed(world, range(3, 4), [])
    report = await world.sync(state_path, [])
    assert (report.parked, report.changed) == (0, 1)
    assert await memberships(world) == {1, 2, 3}
    assert await posted(world) == [(ENTERED, 3)]


async def test_no_events_updates_the_lists_and_posts_nothing(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 6), ["vip"])
    await seed(world, range(6, 7), [])
    snapshot = snapshot_of(vip(1, 2, 3, 4, 6))
    await reconcile(world, state_path, snapshot, AS_OF, post_events=False)
    assert await memberships(world) == {1, 2, 3, 4, 6}
    assert await posted(world) == []


async def test_other_entries_and_audiences_the_snapshot_does_not_name_are_left_alone(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 6), ["legacy", "vip", "winback"])
    await reconcile(world, state_path, snapshot_of(vip(1, 2, 3, 4)), AS_OF)
    state = await world.state()
    lists = {s["phone_number"]: audiences_of(s) for s in state["subscribers"]}
    assert lists[phone(5)] == ["legacy", "winback"]
    assert lists[phone(1)] == ["legacy", "vip", "winback"]


async def test_a_snapshot_reaches_members_by_email_as_events_do(
    world: World, state_path: Path
) -> None:
    await world.seed(
        {"email": "ada@example.com", "properties": {"Segment Audiences": []}},
        {"phone_number": phone(1), "email": "bob@example.com"},
    )
    rows = [("vip", None, "ADA@example.com"), ("vip", "+1 555 555 9999", "bob@example.com")]
    await reconcile(world, state_path, snapshot_of(rows), AS_OF)
    subscribers = by_identity(await world.state())
    assert audiences_of(subscribers["ada@example.com"]) == ["vip"]
    assert audiences_of(subscribers["bob@example.com"]) == ["vip"]  # unknown phone: by email


async def test_an_older_snapshot_than_one_already_reconciled_changes_nothing(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 6), ["vip"])
    await reconcile(world, state_path, snapshot_of(vip(1, 2, 3, 4)), AS_OF)
    older, report = await reconcile(
        world, state_path, snapshot_of(vip(1, 2, 3, 4, 5)), AS_OF - timedelta(minutes=1)
    )
    assert older.plans[0].superseded_by == floor_version(AS_OF)
    assert (report.changed, report.events_posted) == (0, 0)
    assert await memberships(world) == {1, 2, 3, 4}


async def test_a_different_snapshot_of_the_same_instant_is_refused(
    world: World, state_path: Path
) -> None:
    await seed(world, range(1, 6), ["vip"])
    await reconcile(world, state_path, snapshot_of(vip(1, 2, 3, 4, 5)), AS_OF)
    with pytest.raises(ReconcileRefusedError, match="different snapshot of 'vip' as of"):
        await reconcile(world, state_path, snapshot_of(vip(1, 2, 3, 4)), AS_OF)
    assert await memberships(world) == {1, 2, 3, 4, 5}


async def test_a_shop_of_several_pages_is_read_whole(world: World, state_path: Path) -> None:
    await seed(world, range(1, 251), ["vip"])
    planned, report = await reconcile(world, state_path, snapshot_of(vip(*range(2, 251))), AS_OF)
    assert (planned.pages, planned.listed, planned.plans[0].members_before) == (3, 250, 250)
    assert report.api_calls["subscribers.list"] == 3 + 1  # the pages, then one lookup
    assert await memberships(world) == set(range(2, 251))


def test_snapshot_changes_sort_just_above_the_snapshot_floor() -> None:
    floor = floor_version(AS_OF)
    row = row_version(AS_OF, "vip", Identity(phone(1), None))
    assert floor < row
    assert row.timestamp == floor.timestamp == AS_OF
    assert row.message_id.startswith(floor.message_id + ":")
    assert row == row_version(AS_OF, "vip", Identity(phone(1), None))  # stable: reruns dedupe
    assert row != row_version(AS_OF, "winback", Identity(phone(1), None))
