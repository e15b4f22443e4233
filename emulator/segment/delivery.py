"""How Segment delivers: at least once, out of order, sometimes hours late, sometimes batched.

`deliver()` is a generator pipeline over serialised events, seeded and
reproducible (same seed, same input: byte-identical output), whose memory is
bounded by its windows, never by the number of events:

1. duplicates — each event is sent again (same messageId, same bytes) with
   probability `duplicate_rate`;
2. late re-delivery — with probability `late_rate` a copy of the event is
   held back and re-delivered between one and ten shuffle windows later
   (a retry arriving after newer events); at most `late_capacity` are held;
3. shuffle — consecutive windows of `shuffle_window` lines are shuffled;
4. batching — with `batch_size` > 1, consecutive lines are grouped into one
   `{"batch":[…]}` line, as Segment's batch API sends them.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DeliveryConfig", "deliver", "serialise"]


@dataclass(frozen=True)
class DeliveryConfig:
    duplicate_rate: float = 0.1
    shuffle_window: int = 500
    late_rate: float = 0.02
    batch_size: int = 0
    late_capacity: int = 10_000
    seed: int = 1


def serialise(event: dict[str, Any]) -> str:
    """One compact JSON line; key order as built, so output is byte-stable."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def deliver(events: Iterable[dict[str, Any]], config: DeliveryConfig) -> Iterator[str]:
    """NDJSON lines (without newline) as Segment would deliver `events`."""
    rng = random.Random(f"{config.seed}:delivery")
    lines: Iterator[str] = (serialise(event) for event in events)
    lines = _duplicated(lines, config.duplicate_rate, rng)
    lines = _late(lines, config, rng)
    lines = _shuffled(lines, config.shuffle_window, rng)
    return _batched(lines, config.batch_size)


def _duplicated(lines: Iterator[str], rate: float, rng: random.Random) -> Iterator[str]:
    for line in lines:
        yield line
        if rng.random() < rate:
            yield line


def _late(lines: Iterator[str], config: DeliveryConfig, rng: random.Random) -> Iterator[str]:
    window = max(config.shuffle_window, 1)
    held: list[tuple[int, int, str]] = []  # (due position, tie-breaker, line)
    for position, line in enumerate(lines, start=1):
        while held and held[0][0] < position:
            yield heapq.heappop(held)[2]
        yield line
        if rng.random() < config.late_rate:
            if len(held) >= config.late_capacity:
                yield heapq.heappop(held)[2]
            due = position + rng.randint(window, 10 * window)
            heapq.heappush(held, (due, position, line))
    while held:
        yield heapq.heappop(held)[2]


def _shuffled(lines: Iterator[str], window: int, rng: random.Random) -> Iterator[str]:
    if window <= 1:
        yield from lines
        return
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) == window:
            rng.shuffle(buffer)
            yield from buffer
            buffer.clear()
    rng.shuffle(buffer)
    yield from buffer


def _batched(lines: Iterator[str], size: int) -> Iterator[str]:
    if size <= 1:
        yield from lines
        return
    group: list[str] = []
    for line in lines:
        group.append(line)
        if len(group) == size:
            yield '{"batch":[' + ",".join(group) + "]}"
            group.clear()
    if group:
        yield '{"batch":[' + ",".join(group) + "]}"
