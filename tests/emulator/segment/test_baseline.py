"""The port of the Segment destination, against the emulator.

The whole-workload runs talk to the emulator in-process (httpx's ASGI transport):
what they check is the destination's algorithm, which no transport changes, and the
in-process path costs a third of the CPU of loopback HTTP. The single-event tests and
the server-error retries here, the demo and the quick benchmark use real HTTP.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.emulator.segment.baseline import (
    AUDIENCE_PROPERTY,
    BaselineReport,
    map_event,
    run_baseline,
    run_baseline_async,
)
from postscript_audience_lab.emulator.segment.workload import Workload, build_workload
from tests.emulator.conftest import SECRET as KEY
from tests.emulator.conftest import seed

SECRET = "sk_test_baseline"
BASE_URL = "http://emulator"
Pair = tuple[str, str]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve_in_background(EmulatorConfig(secret_key=SECRET, rate_limit_rps=0)) as url:
        yield url


Baseline = Callable[..., Awaitable[BaselineReport]]


@pytest.fixture
def baseline(emulator_app: Starlette) -> Baseline:
    """`run_baseline_async` against the `emulator_app` fixture's app, in-process."""
    transport = httpx.ASGITransport(app=emulator_app)

    async def run(lines: Iterable[Any], **options: Any) -> BaselineReport:
        return await run_baseline_async(lines, BASE_URL, KEY, transport=transport, **options)

    return run


def _seed(url: str, workload: Workload) -> None:
    httpx.post(f"{url}/_emulator/reset").raise_for_status()
    response = httpx.post(
        f"{url}/_emulator/subscribers", json={"subscribers": workload.subscribers}
    )
    response.raise_for_status()


def _expected(workload: Workload) -> dict[Pair, bool]:
    return {
        (row["phone_number"] or row["email"], row["audience_key"]): row["member"]
        for row in workload.expected
    }


async def _observed(
    api: httpx.AsyncClient, pairs: set[Pair]
) -> tuple[dict[Pair, bool], dict[Pair, list[str]]]:
    """Final membership of `pairs`, and the Postscript events posted per pair, in order."""
    state = (await api.get("/_emulator/state")).json()
    names: dict[str, str] = {}
    members: set[Pair] = set()
    for subscriber in state["subscribers"]:
        identity = subscriber["phone_number"] or subscriber["email"]
        names[subscriber["id"]] = identity
        for key in subscriber["properties"].get(AUDIENCE_PROPERTY, []):
            members.add((identity, key))
    posted: dict[Pair, list[str]] = {}
    for event in state["events"]:
        pair = (names[event["subscriber_id"]], event["properties"]["Segment Audience Key"])
        posted.setdefault(pair, []).append(event["type"].removeprefix("Segment_Audience_"))
    return {pair: pair in members for pair in pairs}, posted


def _repeats(posted: dict[Pair, list[str]]) -> int:
    """Events that repeat the previous one for their pair (a correct sync alternates)."""
    return sum(
        1
        for events in posted.values()
        for before, now in itertools.pairwise(events)
        if before == now
    )


@pytest.mark.anyio
@pytest.mark.no_cover  # a whole workload: lines the smaller tests here cover
async def test_baseline_converges_on_in_order_unique_delivery(
    api: httpx.AsyncClient, baseline: Baseline
) -> None:
    workload = build_workload(
        "quick", users=200, tie_rate=0.0, string_bool_rate=0.0, omitted_journey_value_rate=0.0
    )
    await seed(api, *workload.subscribers)
    report = await baseline(workload.iter_lines_in_order())

    expected = _expected(workload)
    observed, posted = await _observed(api, set(expected))
    assert observed == expected
    assert _repeats(posted) == 0
    assert report.events_posted == sum(workload.truth.transition_counts.values())
    assert report.api_calls["subscribers.list"] >= report.events_seen


@pytest.mark.anyio
@pytest.mark.no_cover  # a whole workload: lines the smaller tests here cover
async def test_baseline_ends_wrong_with_duplicate_events_on_segments_real_delivery(
    api: httpx.AsyncClient, baseline: Baseline
) -> None:
    workload = build_workload("quick", users=200)
    await seed(api, *workload.subscribers)
    report = await baseline(workload.iter_lines())

    expected = _expected(workload)
    observed, posted = await _observed(api, set(expected))
    wrong = [pair for pair in expected if observed[pair] != expected[pair]]
    assert len(wrong) > 10, "stale and re-ordered events should leave memberships wrong"
    assert _repeats(posted) > 10, "duplicates should post the same Postscript event again"
    assert report.events_posted > workload.expected_event_count


@pytest.mark.anyio
@pytest.mark.no_cover  # a whole workload: lines the smaller tests here cover
async def test_concurrent_workers_post_one_event_per_delivery(
    api: httpx.AsyncClient, baseline: Baseline
) -> None:
    workload = build_workload("quick", users=120)
    await seed(api, *workload.subscribers)
    lines = list(workload.iter_lines())
    report = await baseline(lines, workers=4)

    assert report.events_seen == len(lines)
    assert report.events_posted == report.api_calls["events.create"] == len(lines)
    assert report.failed == report.dropped_invalid == report.dropped_no_subscriber == 0


@pytest.mark.anyio
async def test_events_for_unknown_subscribers_are_dropped_silently(
    api: httpx.AsyncClient, baseline: Baseline
) -> None:
    workload = build_workload("quick", users=80, unseeded_rate=0.3)
    await seed(api, *workload.subscribers)
    report = await baseline(workload.iter_lines_in_order())

    assert report.dropped_no_subscriber > 0
    assert report.events_posted + report.dropped_no_subscriber == report.events_seen
    assert report.api_calls["subscribers.patch"] <= report.events_posted


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "identify",
        "messageId": "personas_test",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "traits": {"vip": True, "phone": "(555) 555-0100"},
        "context": {
            "personas": {
                "computation_class": "audience",
                "computation_id": "aud_1",
                "computation_key": "vip",
            }
        },
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("value", "member_before", "member_after", "posted"),
    [
        (True, False, True, "Segment_Audience_Entered"),
        (False, True, False, "Segment_Audience_Exited"),
        ("true", False, False, "Segment_Audience_Entered"),  # `"true" == true` is false
        ("false", True, True, "Segment_Audience_Entered"),  # a non-empty string is truthy
        (None, True, True, "Segment_Audience_Exited"),  # no value: neither, and falsy
    ],
)
def test_membership_values_follow_javascript_loose_comparison(
    emulator_url: str, value: object, member_before: bool, member_after: bool, posted: str
) -> None:
    httpx.post(f"{emulator_url}/_emulator/reset").raise_for_status()
    audiences_before = ["other", "vip"] if member_before else ["other"]
    seed = {"phone_number": "+15555550100", "properties": {AUDIENCE_PROPERTY: audiences_before}}
    seeded = httpx.post(f"{emulator_url}/_emulator/subscribers", json={"subscribers": [seed]})
    seeded.raise_for_status()
    traits: dict[str, Any] = {"phone": "(555) 555-0100"}
    if value is not None:
        traits["vip"] = value
    run_baseline([_event(traits=traits)], emulator_url, SECRET)

    state = httpx.get(f"{emulator_url}/_emulator/state").json()
    audiences = state["subscribers"][0]["properties"][AUDIENCE_PROPERTY]
    assert ("vip" in audiences) is member_after
    assert "other" in audiences
    assert [e["type"] for e in state["events"]] == [posted]


def test_mapping_prefers_traits_then_context_traits_and_properties_then_traits() -> None:
    event = _event(
        type="track",
        properties={"audience_key": "vip", "vip": False},
        traits={"email": "A@Example.com"},
        context={
            "personas": {"computation_class": "audience", "computation_key": "vip"},
            "traits": {"email": "b@example.com", "phone": "+1 555 555 0100"},
        },
    )
    payload = map_event(event)
    assert (payload.email, payload.phone) == ("A@Example.com", "+1 555 555 0100")
    assert payload.traits_or_props["vip"] is False
    assert payload.audience_id is None


def test_server_errors_are_retried_and_every_event_is_accounted_for(emulator_url: str) -> None:
    workload = build_workload("quick", users=60)
    _seed(emulator_url, workload)
    faults = {"error_rate": 0.3, "error_statuses": [500, 503], "seed": 3}
    httpx.put(f"{emulator_url}/_emulator/faults", json=faults).raise_for_status()
    try:
        report = run_baseline(workload.iter_lines(), emulator_url, SECRET, backoff_s=0.0)
    finally:
        httpx.put(f"{emulator_url}/_emulator/faults", json={}).raise_for_status()

    assert report.retries > 0
    assert report.events_seen == (
        report.events_processed
        + report.failed
        + report.dropped_invalid
        + report.dropped_no_subscriber
    )
    assert report.events_processed > report.failed


@pytest.mark.anyio
async def test_the_baseline_runs_in_process_through_an_httpx_transport(
    api: httpx.AsyncClient, baseline: Baseline
) -> None:
    batch = {"batch": [_event(), _event(messageId="personas_again")]}
    before = await baseline([batch])
    await seed(api, {"phone_number": "+15555550100"})
    after = await baseline([batch], workers=2)
    state = (await api.get("/_emulator/state")).json()

    assert before.dropped_no_subscriber == 2
    assert after.events_posted == 2
    assert len(state["events"]) == 2
