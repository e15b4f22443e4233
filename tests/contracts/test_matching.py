"""Comparing an answer with a recorded response, matcher by matcher."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from postscript_audience_lab.contracts.matching import child, compare

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def kinds(
    expected: Any, actual: Any, matchers: dict[str, Any] | None = None
) -> list[tuple[str, str]]:
    return [(d.path, d.kind) for d in compare(expected, actual, matchers or {})]


KEYS = st.from_regex(r"\A[a-z][a-z_ ]{0,5}\Z")
NESTED = st.recursive(
    st.integers() | st.text(max_size=4) | st.booleans(),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3)
        | st.dictionaries(KEYS, inner, min_size=1, max_size=3)
    ),
    max_leaves=10,
)


@given(JSON)
def test_any_json_value_matches_itself(value: Any) -> None:
    assert compare(value, value) == []


def leaves(value: Any, path: str = "$") -> list[tuple[str, list[str | int]]]:
    """Every scalar in `value`: its printed path and the keys leading to it."""
    if isinstance(value, dict):
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return [(path, [])]
    return [
        (leaf_path, [key, *trail])
        for key, item in items
        for leaf_path, trail in leaves(item, child(path, key))
    ]


@given(NESTED, st.data())
def test_one_changed_leaf_is_reported_once_at_its_path(recorded: Any, data: st.DataObject) -> None:
    path, trail = data.draw(st.sampled_from(leaves(recorded)))
    answer = json.loads(json.dumps(recorded))
    holder = answer
    for key in trail[:-1]:
        holder = holder[key]
    if trail:
        holder[trail[-1]] = None
    else:
        answer = None
    assert [(d.path, d.kind) for d in compare(recorded, answer)] == [(path, "wrong type")]


def test_a_missing_and_an_extra_field_are_both_reported() -> None:
    assert sorted(kinds({"phone_number": "+1"}, {"phone": "+1"})) == [
        ("$.phone", "unexpected field"),
        ("$.phone_number", "missing field"),
    ]


def test_a_type_matcher_accepts_any_value_of_that_type_and_reports_another() -> None:
    matchers = {"$.ps_id": {"type": "integer"}, "$.created_at": {"type": "datetime"}}
    recorded = {"ps_id": 1, "created_at": "2026-01-01T00:00:00+00:00"}
    assert (
        kinds(recorded, {"ps_id": 99, "created_at": "2031-05-06T07:08:09.123456Z"}, matchers) == []
    )
    assert kinds(recorded, {"ps_id": "99", "created_at": "yesterday"}, matchers) == [
        ("$.ps_id", "wrong type"),
        ("$.created_at", "wrong type"),
    ]


def test_a_reference_seen_twice_must_match_itself() -> None:
    matchers = {"$.subscribers[*].id": {"ref": "subscriber.alice.id"}}
    recorded = {"subscribers": [{"id": "s_1"}, {"id": "s_1"}]}
    assert kinds(recorded, {"subscribers": [{"id": "s_9"}, {"id": "s_9"}]}, matchers) == []
    assert kinds(recorded, {"subscribers": [{"id": "s_9"}, {"id": "s_8"}]}, matchers) == [
        ("$.subscribers[1].id", "reference subscriber.alice.id mismatch")
    ]


def test_a_reference_bound_by_set_up_must_be_answered() -> None:
    bindings = {"subscriber.alice.id": "s_from_setup"}
    differences = compare(
        {"id": "s_1"}, {"id": "s_other"}, {"$.id": {"ref": "subscriber.alice.id"}}, bindings
    )
    assert [d.kind for d in differences] == ["reference subscriber.alice.id mismatch"]


def test_subset_allows_extra_keys_but_not_missing_or_different_ones() -> None:
    matchers = {"$.properties": {"type": "object", "subset": True}}
    recorded = {"properties": {"tier": "gold"}}
    assert kinds(recorded, {"properties": {"tier": "gold", "other": 1}}, matchers) == []
    assert kinds(recorded, {"properties": {"tier": "silver"}}, matchers) == [
        ("$.properties.tier", "unexpected value")
    ]


def test_each_like_compares_every_item_with_the_first_recorded_one() -> None:
    matchers = {"$.items": {"each_like": {"min": 1}}, "$.items[*].id": {"type": "string"}}
    recorded = {"items": [{"id": "a", "kind": "x"}]}
    assert (
        kinds(recorded, {"items": [{"id": "b", "kind": "x"}, {"id": "c", "kind": "x"}]}, matchers)
        == []
    )
    assert kinds(recorded, {"items": []}, matchers) == [("$.items", "too few items")]
    assert kinds(
        recorded, {"items": [{"id": "b", "kind": "x"}, {"id": 3, "kind": "x"}]}, matchers
    ) == [("$.items[1].id", "wrong type")]


def test_arrays_without_a_matcher_must_have_the_same_length() -> None:
    assert kinds({"event_ids": ["a"]}, {"event_ids": ["a", "b"]}) == [
        ("$.event_ids", "wrong length")
    ]


def test_keys_that_are_not_identifiers_are_quoted_in_paths() -> None:
    assert kinds({"properties": {"Segment Audiences": ["a"]}}, {"properties": {}}) == [
        ('$.properties["Segment Audiences"]', "missing field")
    ]
