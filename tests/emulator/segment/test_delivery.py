from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from postscript_audience_lab.emulator.segment.delivery import DeliveryConfig, deliver
from postscript_audience_lab.emulator.segment.workload import build_workload


def _events(count: int) -> list[dict[str, Any]]:
    return [{"messageId": f"m{i:05d}"} for i in range(count)]


def _ids(lines: list[str]) -> list[str]:
    return [json.loads(line)["messageId"] for line in lines]


def _digest(lines: Iterator[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_the_same_seed_gives_byte_identical_output() -> None:
    first = _digest(build_workload("quick", batch_size=5).iter_lines())
    again = _digest(build_workload("quick", batch_size=5).iter_lines())
    assert first == again


def test_another_seed_gives_other_output() -> None:
    assert _digest(build_workload("quick").iter_lines()) != _digest(
        build_workload("quick", seed=2).iter_lines()
    )


def test_every_event_arrives_at_least_once_and_copies_are_byte_identical() -> None:
    events = _events(2_000)
    lines = list(deliver(events, DeliveryConfig(duplicate_rate=0.1, late_rate=0.05)))
    counts = Counter(lines)
    assert {json.loads(line)["messageId"] for line in counts} == {e["messageId"] for e in events}
    extra = len(lines) - len(events)
    assert 200 <= extra <= 400  # ~10% duplicates + ~5% late copies
    assert max(counts.values()) >= 2


def test_shuffling_only_moves_events_within_their_window() -> None:
    config = DeliveryConfig(duplicate_rate=0, late_rate=0, shuffle_window=50)
    delivered = _ids(list(deliver(_events(500), config)))
    assert delivered != sorted(delivered)
    for start in range(0, 500, 50):
        window = delivered[start : start + 50]
        assert sorted(window) == [f"m{i:05d}" for i in range(start, start + 50)]


def test_late_copies_arrive_at_least_a_window_after_the_original() -> None:
    config = DeliveryConfig(duplicate_rate=0, late_rate=0.1, shuffle_window=20)
    delivered = _ids(list(deliver(_events(1_000), config)))
    first_seen: dict[str, int] = {}
    pairs = []  # (original, late copy) positions
    for position, message_id in enumerate(delivered):
        if message_id in first_seen:
            pairs.append((first_seen[message_id], position))
        else:
            first_seen[message_id] = position
    # copies still held when the input ends are flushed at once; the others are
    # due 1-10 windows on, and shuffling moves a line only within its window of
    # 20, so each of them lands in a later window than its original
    held_to_the_end = {f"m{i:05d}" for i in range(1_000 - 10 * 20, 1_000)}
    due = [
        (original, copy) for original, copy in pairs if delivered[original] not in held_to_the_end
    ]
    assert due
    assert all(copy // 20 > original // 20 for original, copy in due)
    assert sum(copy - original for original, copy in pairs) / len(pairs) > 40


def test_batches_group_consecutive_events_into_batch_lines() -> None:
    lines = list(deliver(_events(23), DeliveryConfig(duplicate_rate=0, late_rate=0, batch_size=5)))
    sizes = [len(json.loads(line)["batch"]) for line in lines]
    assert sizes == [5, 5, 5, 5, 3]


def test_delivery_streams_its_input_instead_of_reading_it_all() -> None:
    endless = ({"messageId": f"m{i}"} for i in itertools.count())
    first = list(itertools.islice(deliver(endless, DeliveryConfig()), 5_000))
    assert len(first) == 5_000
