from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postscript_audience_lab.emulator.segment.strategies import Traffic, audience_traffic

from .helpers import SubscriberIndex, fold_by_version, parse_all
from .helpers import serialise_run as _lines


@given(audience_traffic())
def test_expected_is_the_greatest_version_among_everything_delivered(traffic: Traffic) -> None:
    changes = parse_all(line for run in traffic.runs for line in _lines(run))
    assert fold_by_version(changes, SubscriberIndex(traffic.subscribers)) == traffic.expected


@given(audience_traffic())
def test_expected_transitions_alternate_and_end_in_the_expected_state(traffic: Traffic) -> None:
    assert set(traffic.expected_entered_exited) == set(traffic.expected)
    for pair, transitions in traffic.expected_entered_exited.items():
        assert transitions[::2] == ["Entered"] * len(transitions[::2])
        assert transitions[1::2] == ["Exited"] * len(transitions[1::2])
        assert traffic.expected[pair] is (len(transitions) % 2 == 1)


@given(audience_traffic(late_subscribers=True))
def test_expected_transitions_are_the_changes_between_run_ends(traffic: Traffic) -> None:
    everyone = SubscriberIndex(_seed_all(traffic))
    delivered: list[str] = []
    state: dict[tuple[str, str], bool] = {}
    posted: dict[tuple[str, str], list[str]] = {pair: [] for pair in traffic.expected}
    present: set[str] = set()
    for number, run in enumerate(traffic.runs):
        present |= {s.get("phone_number") or s["email"] for s in traffic.seeds_before_run(number)}
        delivered.extend(_lines(run))
        after = fold_by_version(parse_all(delivered), everyone)
        for pair, member in after.items():
            if pair[0] not in present:
                continue
            if member != state.get(pair, False):
                posted[pair].append("Entered" if member else "Exited")
            state[pair] = member
    assert posted == traffic.expected_entered_exited
    assert {pair for pair in after if pair[0] not in present} == traffic.never_seeded
    assert {pair: m for pair, m in after.items() if pair[0] in present} == traffic.expected


def _seed_all(traffic: Traffic) -> list[dict[str, object]]:
    return [s for run in range(len(traffic.runs) + 1) for s in traffic.seeds_before_run(run)]


@settings(max_examples=30)
@given(st.data())
def test_every_event_is_delivered_at_least_once(data: st.DataObject) -> None:
    traffic = data.draw(audience_traffic(max_events=6, max_runs=4))
    delivered = {i for run in traffic.delivered for i in run}
    assert delivered == set(range(len(traffic.history)))
    assert "history:" in repr(traffic)
