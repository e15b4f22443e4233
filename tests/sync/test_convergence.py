"""docs/design/convergence.md as properties: any history, delivery, split into runs, faults."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postscript_audience_lab.emulator.segment.strategies import Traffic, audience_traffic
from postscript_audience_lab.sync.plan import ENTERED, EXITED
from tests.sync.conftest import CONVERGENCE
from tests.sync.world import World, audiences_of, by_identity

pytestmark = pytest.mark.no_cover  # whole runs repeat lines other tests cover (noxfile: tests)

FOREIGN = ["legacy_vip", "manual_list"]  # entries the engine is never told about
OTHER_PROPERTIES = {"Favourite colour": "teal"}
SEEDED_PROPERTIES = {"Segment Audiences": FOREIGN, **OTHER_PROPERTIES}

# State files in RAM when the machine has a tmpfs there: examples run faster.
SHM = Path("/dev/shm")  # noqa: S108 -- TemporaryDirectory makes a private directory inside
SCRATCH = SHM if SHM.is_dir() else None
WORLD = World()  # one app for every example; each example starts with an admin reset

FAULTS = {
    "error_rate": 0.2,
    "error_statuses": [429, 500, 502, 503],
    "timeout_rate": 0.05,
    "timeout_ms": 1,
    "seed": 7,
}


def _converge(
    traffic: Traffic, faults: dict[str, Any] | None = None, max_read_age_s: float = 60.0
) -> dict[str, Any]:
    """Seed, run the engine once per delivery run on one state file, return the emulator state."""

    async def scenario() -> dict[str, Any]:
        await WORLD.reset()
        if faults:
            await WORLD.faults(**faults)
        with tempfile.TemporaryDirectory(dir=SCRATCH) as scratch:
            state_path = Path(scratch) / "state.sqlite"
            for number, run in enumerate(traffic.runs):
                arriving = [
                    {**seed, "properties": SEEDED_PROPERTIES}
                    for seed in traffic.seeds_before_run(number)
                ]
                if arriving:
                    await WORLD.seed(*arriving)
                report = await WORLD.sync(state_path, run, max_read_age_s=max_read_age_s)
                assert report.pending == 0, report
            assert (report.parked > 0) is bool(traffic.never_seeded), report
        await WORLD.faults()
        return await WORLD.state()

    return anyio.run(scenario)


def _assert_the_guarantees_hold(traffic: Traffic, state: dict[str, Any]) -> None:
    subscribers = by_identity(state)
    # docs/design/convergence.md#state state, docs/design/convergence.md#foreign-entries foreign
    # entries first and in order, other properties untouched
    for (identity, audience), member in traffic.expected.items():
        subscriber = subscribers[identity]
        audiences = audiences_of(subscriber)
        assert (audience in audiences) is member, (identity, audience, audiences)
        assert audiences[: len(FOREIGN)] == FOREIGN
        assert subscriber["properties"]["Favourite colour"] == "teal"
        assert len(audiences) == len(set(audiences))
    # docs/design/convergence.md#nothing-lost changes of shoppers who never became subscribers stay
    # parked; nothing else exists
    assert len(state["subscribers"]) == sum(1 for at in traffic.arrivals if at < len(traffic.runs))
    # docs/design/convergence.md#events-mirror-changes events mirror changes, alternate, and carry
    # the winning version
    identity_of = {str(subscriber["id"]): identity for identity, subscriber in subscribers.items()}
    versions = {item.message_id: item for item in traffic.history}
    posted: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in state["events"]:
        audience = event["properties"]["Segment Audience Key"]
        pair = (traffic.identity_of(identity_of[event["subscriber_id"]]), audience)
        posted[pair].append("Entered" if event["type"] == ENTERED else "Exited")
        winner = versions[event["external_id"]]
        assert winner.audience == audience
        assert winner.member is (event["type"] == ENTERED)
        assert event["type"] in (ENTERED, EXITED)
        instant = winner.version[0].astimezone(UTC)
        assert event["occurred_at"] == instant.strftime("%Y-%m-%d %H:%M:%S.%f")
    expected = {pair: kinds for pair, kinds in traffic.expected_entered_exited.items() if kinds}
    assert dict(posted) == expected


@CONVERGENCE
@given(audience_traffic(late_subscribers=True), st.sampled_from([0.0, 60.0]))
def test_membership_converges_under_any_delivery_order_duplicates_runs_and_arrivals(
    traffic: Traffic, max_read_age_s: float
) -> None:
    _assert_the_guarantees_hold(traffic, _converge(traffic, max_read_age_s=max_read_age_s))


@CONVERGENCE
@given(audience_traffic())
def test_membership_converges_while_the_api_fails_20_percent_of_calls(traffic: Traffic) -> None:
    _assert_the_guarantees_hold(traffic, _converge(traffic, FAULTS))
