"""The planner decides docs/design/convergence.md for one subscriber: list contents, ties,
events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from postscript_audience_lab.sync.parse import AudienceChange, Version
from postscript_audience_lab.sync.plan import AUDIENCES_PROPERTY, ENTERED, EXITED, plan_subscriber

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def change(
    key: str, member: bool, minute: int = 0, message_id: str = "m", audience_id: str | None = "a1"
) -> AudienceChange:
    version = Version(T0 + timedelta(minutes=minute), message_id)
    return AudienceChange("+15555550100", None, key, audience_id, member, version)


def subscriber(audiences: Any = None, **properties: Any) -> dict[str, Any]:
    props = dict(properties)
    if audiences is not None:
        props[AUDIENCES_PROPERTY] = audiences
    return {"id": "s_1", "properties": props}


def test_entering_appends_the_key_after_foreign_entries_and_posts_entered() -> None:
    plan = plan_subscriber(subscriber(["legacy", "manual"]), [change("vip", True, 1, "m1")])
    assert plan.patch_properties == {AUDIENCES_PROPERTY: ["legacy", "manual", "vip"]}
    assert plan.events == [
        {
            "type": ENTERED,
            "subscriber_id": "s_1",
            "occurred_at": "2024-05-01 12:01:00.000000",
            "external_id": "m1",
            "properties": {"Segment Audience Key": "vip", "Segment Audience ID": "a1"},
        }
    ]


def test_exiting_removes_only_that_key_and_keeps_foreign_entries_in_order() -> None:
    plan = plan_subscriber(subscriber(["z_legacy", "vip", "a_manual"]), [change("vip", False)])
    assert plan.patch_properties == {AUDIENCES_PROPERTY: ["z_legacy", "a_manual"]}
    assert [event["type"] for event in plan.events] == [EXITED]


def test_the_patch_touches_only_the_audiences_property() -> None:
    plan = plan_subscriber(subscriber([], colour="teal", score=3), [change("vip", True)])
    assert plan.patch_properties is not None
    assert set(plan.patch_properties) == {AUDIENCES_PROPERTY}


def test_no_patch_and_no_event_when_the_list_already_agrees() -> None:
    present = plan_subscriber(subscriber(["vip"]), [change("vip", True)])
    absent = plan_subscriber(subscriber(["other"]), [change("vip", False)])
    for plan in (present, absent):
        assert plan.patch_properties is None
        assert plan.events == []
        assert plan.flips == []


def test_a_subscriber_without_the_property_starts_from_an_empty_list() -> None:
    plan = plan_subscriber({"id": "s_1"}, [change("vip", True)])
    assert plan.patch_properties == {AUDIENCES_PROPERTY: ["vip"]}


def test_a_scalar_value_someone_else_wrote_is_kept_as_a_foreign_entry() -> None:
    plan = plan_subscriber(subscriber("hand-written"), [change("vip", True)])
    assert plan.patch_properties == {AUDIENCES_PROPERTY: ["hand-written", "vip"]}


def test_foreign_entries_that_are_not_strings_go_back_unchanged() -> None:
    plan = plan_subscriber(subscriber([7, None, {"by": "hand"}, "vip"]), [change("new", True)])
    assert plan.patch_properties == {AUDIENCES_PROPERTY: [7, None, {"by": "hand"}, "vip", "new"]}
    removal = plan_subscriber(subscriber([7, "vip"]), [change("vip", False)])
    assert removal.patch_properties == {AUDIENCES_PROPERTY: [7]}


def test_the_greatest_version_wins_whatever_the_order_of_changes() -> None:
    changes = [change("vip", True, 5, "m5"), change("vip", False, 9, "m9"), change("vip", True, 1)]
    for ordering in (changes, changes[::-1]):
        plan = plan_subscriber(subscriber(["vip"]), ordering)
        assert plan.winners["vip"].version.message_id == "m9"
        assert plan.patch_properties == {AUDIENCES_PROPERTY: []}
        assert len(plan.stale) == 2


def test_ties_on_timestamp_are_broken_by_the_greater_message_id() -> None:
    enter, leave = change("vip", True, 3, "msg-b"), change("vip", False, 3, "msg-a")
    for ordering in ([enter, leave], [leave, enter]):
        plan = plan_subscriber(subscriber([]), ordering)
        assert plan.winners["vip"] is enter
        assert plan.patch_properties == {AUDIENCES_PROPERTY: ["vip"]}


def test_a_change_not_newer_than_what_was_applied_is_stale_and_changes_nothing() -> None:
    applied = {"vip": Version(T0 + timedelta(minutes=5), "m5")}
    plan = plan_subscriber(subscriber(["vip"]), [change("vip", False, 4)], applied=applied)
    assert plan.patch_properties is None
    assert plan.events == []
    assert plan.winners == {}
    assert len(plan.stale) == 1


def test_several_audiences_are_written_in_one_patch_with_one_event_each() -> None:
    changes = [change("a", True, 1, "m1"), change("b", False, 2, "m2"), change("c", True, 3, "m3")]
    plan = plan_subscriber(subscriber(["b", "x"]), changes)
    assert plan.patch_properties == {AUDIENCES_PROPERTY: ["x", "a", "c"]}
    assert [(e["type"], e["external_id"]) for e in plan.events] == [
        (ENTERED, "m1"),
        (EXITED, "m2"),
        (ENTERED, "m3"),
    ]


def test_events_can_be_switched_off_without_changing_the_patch() -> None:
    plan = plan_subscriber(subscriber([]), [change("vip", True)], post_events=False)
    assert plan.patch_properties == {AUDIENCES_PROPERTY: ["vip"]}
    assert plan.events == []
    assert plan.flips == ["vip"]


def test_an_unknown_audience_id_is_left_out_of_the_event_properties() -> None:
    plan = plan_subscriber(subscriber([]), [change("vip", True, audience_id=None)])
    assert plan.events[0]["properties"] == {"Segment Audience Key": "vip"}


def test_occurred_at_is_the_winning_timestamp_in_utc_with_microseconds() -> None:
    version = Version(datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC), "m")
    winner = AudienceChange(None, "a@example.com", "vip", None, True, version)
    plan = plan_subscriber(subscriber([]), [winner])
    assert plan.events[0]["occurred_at"] == "2024-05-01 14:00:00.123456"


def test_occurred_at_pads_an_early_year_to_four_digits() -> None:
    version = Version(datetime(999, 1, 2, tzinfo=UTC), "m")
    early = AudienceChange(None, "a@example.com", "vip", None, True, version)
    plan = plan_subscriber(subscriber([]), [early])
    assert plan.events[0]["occurred_at"] == "0999-01-02 00:00:00.000000"


changes_strategy = st.lists(
    st.builds(
        change,
        key=st.sampled_from(["a", "b", "legacy"]),
        member=st.booleans(),
        minute=st.integers(0, 2),  # few instants, so ties are common
        message_id=st.sampled_from(["m1", "m2", "m3"]),
    ),
    max_size=8,
)


@given(
    before=st.lists(st.sampled_from(["a", "b", "legacy", "other"]), unique=True),
    changes=changes_strategy,
    order=st.randoms(use_true_random=False),
)
def test_the_plan_depends_only_on_the_greatest_version_per_audience(
    before: list[str], changes: list[AudienceChange], order: random.Random
) -> None:
    shuffled = list(changes)
    order.shuffle(shuffled)
    plan = plan_subscriber(subscriber(before), changes)
    assert plan_subscriber(subscriber(before), shuffled).patch_properties == plan.patch_properties
    winners: dict[str, AudienceChange] = {}
    for item in changes:
        known = winners.get(item.audience_key)
        if known is None or (item.version, item.member) > (known.version, known.member):
            winners[item.audience_key] = item
    after = plan.audiences if plan.audiences is not None else before
    for key, winner in winners.items():
        assert (key in after) is winner.member
    untouched = [entry for entry in before if entry not in winners]
    assert [entry for entry in after if entry not in winners] == untouched
    flipped = [key for key, w in winners.items() if (key in before) is not w.member]
    assert sorted(event["properties"]["Segment Audience Key"] for event in plan.events) == sorted(
        flipped
    )
