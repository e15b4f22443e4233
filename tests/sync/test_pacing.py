"""docs/design/economy.md#pace: the adaptive rate (AIMD) and the paced, prioritised send queue."""

from __future__ import annotations

import math

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postscript_audience_lab.sync.pacing import (
    DECREASE,
    INCREASE_PER_S,
    WINDOW_S,
    AdaptiveRate,
    Pacer,
    Priority,
)

# (seconds after the previous one, seconds the 429'd request was sent before it arrived)
Limited = st.lists(
    st.tuples(st.floats(0, 30, allow_nan=False), st.floats(0, 5, allow_nan=False)), max_size=40
)


@given(st.floats(0.5, 100), Limited)
def test_the_rate_stays_between_its_floor_and_ceiling_whatever_429s_come(
    ceiling: float, limited: list[tuple[float, float]]
) -> None:
    rate, now = AdaptiveRate(ceiling), 0.0
    for after, flight in limited:
        now += after
        rate.on_rate_limited(now - flight, now)
        assert rate.floor <= rate.rate(now) <= ceiling
        assert rate.floor <= rate.rate(now + after) <= ceiling


@given(st.lists(st.floats(0, 0.5, allow_nan=False), min_size=1, max_size=20))
def test_429s_to_requests_sent_before_the_latest_decrease_lower_the_rate_once(
    flights: list[float],
) -> None:
    rate = AdaptiveRate(15.0, now=0.0)
    sent = 10.0  # all these requests left at the same rate...
    for number, flight in enumerate(sorted(flights)):
        lowered = rate.on_rate_limited(sent, sent + flight)  # ...and were answered 429
        assert lowered is (number == 0)
    assert rate.decreases == 1
    assert rate.rate(sent + max(flights)) <= 15.0 * DECREASE + INCREASE_PER_S * max(flights) + 1e-9


def test_the_rate_recovers_additively_once_429s_stop() -> None:
    rate = AdaptiveRate(15.0, now=0.0)
    rate.on_rate_limited(0.0, 1.0)
    low = rate.rate(1.0)
    assert low == pytest.approx(15.0 * DECREASE)
    assert rate.rate(3.0) == pytest.approx(low + 2 * INCREASE_PER_S)
    back = 1.0 + (15.0 - low) / INCREASE_PER_S
    assert rate.rate(back) == pytest.approx(15.0)
    assert rate.rate(back + 100) == 15.0


@settings(deadline=None)  # a thousand samples a case: slow on a busy machine, not wrong
@given(Limited, st.floats(0, 60, allow_nan=False), st.floats(0.1, 60, allow_nan=False))
def test_the_mean_rate_is_the_time_average_of_the_rate_as_it_was(
    limited: list[tuple[float, float]], start: float, length: float
) -> None:
    events, now = [], 0.0
    for after, flight in limited:
        now += after
        events.append((now - flight, now))
    rate = AdaptiveRate(15.0)
    for sent, at in events:
        rate.on_rate_limited(sent, at)
    # the rate as it was at each instant: replay the 429s in step with the samples
    replay, pending, steps = AdaptiveRate(15.0), list(events), 1000
    width, total = length / steps, 0.0
    for step in range(steps):
        instant = start + (step + 0.5) * width
        while pending and pending[0][1] <= instant:
            replay.on_rate_limited(*pending.pop(0))
        total += replay.rate(instant)
    # midpoint sums are exact on the linear stretches; each kink costs at most one step
    kinks = 2 * (rate.decreases + 1)
    assert rate.mean(start, start + length) == pytest.approx(total / steps, abs=15 * kinks / steps)


def test_a_rate_without_429s_averages_its_ceiling() -> None:
    assert AdaptiveRate(15.0).mean(3.0, 30.0) == pytest.approx(15.0)


@pytest.mark.anyio
@pytest.mark.parametrize("rps", [40.0, 25.5])
async def test_no_window_of_a_second_holds_more_sends_than_the_rate(rps: float) -> None:
    pacer = Pacer(AdaptiveRate(rps))
    sent: list[float] = []

    async def send(priority: Priority) -> None:
        sent.append(await pacer.acquire(priority))

    async with anyio.create_task_group() as tasks:
        for number in range(int(rps * 1.6)):
            tasks.start_soon(send, Priority(number % 3))
    sent.sort()
    most = math.floor(rps * WINDOW_S)
    assert all(later - first >= WINDOW_S for first, later in zip(sent, sent[most:], strict=False))
    assert len(sent) == int(rps * 1.6)


@pytest.mark.anyio
async def test_lookups_and_patches_take_the_next_slot_before_event_posts() -> None:
    pacer = Pacer(AdaptiveRate(100.0))
    order: list[str] = []

    async def send(name: str, priority: Priority) -> None:
        await pacer.acquire(priority)
        order.append(name)

    await pacer.acquire(Priority.EVENT)  # the next slot is 10 ms away: everyone below queues
    async with anyio.create_task_group() as tasks:
        for name, priority in [
            ("event 1", Priority.EVENT),
            ("event 2", Priority.EVENT),
            ("patch", Priority.PATCH),
            ("lookup", Priority.READ),
        ]:
            tasks.start_soon(send, name, priority)
    assert order == ["lookup", "patch", "event 1", "event 2"]


@pytest.mark.anyio
async def test_a_cancelled_wait_gives_its_turn_to_the_next_in_line() -> None:
    pacer = Pacer(AdaptiveRate(50.0))
    await pacer.acquire(Priority.READ)
    got: list[str] = []
    async with anyio.create_task_group() as tasks:

        async def wait_then_give_up() -> None:
            with anyio.move_on_after(0.001):
                await pacer.acquire(Priority.READ)
                got.append("cancelled one")

        async def wait() -> None:
            await pacer.acquire(Priority.EVENT)
            got.append("event")

        tasks.start_soon(wait_then_give_up)
        tasks.start_soon(wait)
    assert got == ["event"]
