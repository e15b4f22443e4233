"""The public strategies: the emulator takes what they draw; without hypothesis, a clear error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postscript_audience_lab.emulator.segment import strategies as segment_strategies
from postscript_audience_lab.emulator.testing import Postscript, SubscriberSeed
from postscript_audience_lab.emulator.testing import strategies as public

EXAMPLES = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Postscript]:
    with Postscript.in_process(rate_limit=0) as postscript:
        yield postscript


def e164(phone: str) -> str:
    return phonenumbers.format_number(
        phonenumbers.parse(phone, "US"), phonenumbers.PhoneNumberFormat.E164
    )


@EXAMPLES
@given(seeds=public.subscriber_lists(min_size=1, max_size=8))
def test_drawn_subscriber_lists_are_seeded_whole_and_stored_as_drawn(
    emulator: Postscript, seeds: list[SubscriberSeed]
) -> None:
    emulator.reset()
    stored = emulator.seed_many(seeds)
    assert len(stored) == len(seeds)
    for seed, subscriber in zip(seeds, stored, strict=True):
        assert "phone_number" in seed or "email" in seed
        if "phone_number" in seed:
            assert subscriber.phone_number == e164(seed["phone_number"])
        assert subscriber.email == seed.get("email")
        assert subscriber.properties == seed.get("properties", {})
        assert subscriber.tags == seed.get("tags", [])


@EXAMPLES
@given(seed=public.subscribers())
def test_a_drawn_subscriber_is_seeded_by_keyword(
    emulator: Postscript, seed: SubscriberSeed
) -> None:
    emulator.reset()
    assert emulator.seed(**seed).ps_id == 1


@settings(max_examples=60, deadline=None)
@given(seeds=public.subscriber_lists(max_size=10))
def test_no_two_drawn_subscribers_share_a_phone_however_written(
    seeds: list[SubscriberSeed],
) -> None:
    phones = [e164(seed["phone_number"]) for seed in seeds if "phone_number" in seed]
    assert len(phones) == len(set(phones))


def test_the_engage_strategies_are_the_labs_own() -> None:
    assert public.audience_traffic is segment_strategies.audience_traffic
    assert public.audience_events is segment_strategies.valid_events
    assert public.Traffic is segment_strategies.Traffic


@settings(max_examples=10, deadline=None)
@given(traffic=public.audience_traffic(), drawn=public.audience_events())
def test_engage_strategies_draw_traffic_and_events_with_their_meaning(
    traffic: public.Traffic, drawn: public.ValidEvent
) -> None:
    assert traffic.runs
    assert {key for _, key in traffic.expected} <= {audience.key for audience in traffic.audiences}
    assert drawn.expected.audience_key in str(drawn.event)


def test_without_hypothesis_the_module_says_which_extra_to_install() -> None:
    blocked = (
        "import sys\n"
        "sys.modules['hypothesis'] = None  # importing it now fails, as when it is absent\n"
        "import postscript_audience_lab.emulator.testing.strategies\n"
    )
    result = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert (
        "postscript_audience_lab.emulator.testing.strategies needs hypothesis: "
        "pip install 'postscript-audience-lab[testing]'" in (result.stderr)
    )


def test_the_strategies_are_hypothesis_strategies() -> None:
    for strategy in (public.subscribers(), public.subscriber_lists(), public.audience_events()):
        assert isinstance(strategy, st.SearchStrategy)
