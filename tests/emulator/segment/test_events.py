from __future__ import annotations

import pytest
from hypothesis import given

from postscript_audience_lab.emulator.segment.events import email_spellings, phone_spellings
from postscript_audience_lab.emulator.segment.identity import normalise_email, normalise_phone
from postscript_audience_lab.emulator.segment.scenario import Population
from postscript_audience_lab.emulator.segment.strategies import ValidEvent, valid_events
from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.sync.parse import AudienceChange, parse_event

from .helpers import SubscriberIndex, parse_all


@pytest.mark.parametrize("e164", ["+15552000000", "+15555550199", "+15552009999"])
def test_every_phone_spelling_normalises_back_to_e164(e164: str) -> None:
    assert {normalise_phone(spelling) for spelling in phone_spellings(e164)} == {e164}


def test_every_email_spelling_normalises_back_to_the_lower_case_address() -> None:
    email = "shopper00042@example.com"
    assert {normalise_email(spelling) for spelling in email_spellings(email)} == {email}


def test_population_phones_are_possible_e164_numbers() -> None:
    population = Population(users=10_000, audiences=1)
    phones = [s.phone for s in population.shoppers() if s.phone]
    assert len(phones) == 7_500
    assert all(normalise_phone(phone) == phone for phone in phones[::97])


@pytest.mark.parametrize("batch_size", [0, 7])
def test_every_generated_event_maps_cleanly_by_the_event_mapping(batch_size: int) -> None:
    workload = build_workload("quick", batch_size=batch_size)
    changes = parse_all(workload.iter_lines())
    assert len(changes) > workload.truth.events  # duplicates and late copies included
    index = SubscriberIndex(workload.subscribers)
    identities = {(index.identity(c), c.audience_key) for c in changes}
    audiences = workload.scenario.population.all_audiences()
    shoppers = workload.scenario.population
    truth_pairs = {
        (shoppers.shopper(u).identity, audiences[a].key) for u, a in workload.truth.final
    }
    assert identities == truth_pairs


def test_generated_traffic_has_every_event_shape_the_mapping_allows() -> None:
    workload = build_workload("quick")
    text = "\n".join(workload.iter_lines())
    for shape in ('"type":"identify"', '"type":"track"', '"journey_step"', '"Audience Exited"'):
        assert shape in text
    assert '":"true"' in text or '":"TRUE"' in text or '":"True"' in text
    assert "(555) " in text
    assert "@EXAMPLE.COM" in text


@given(valid_events())
def test_drawn_valid_events_parse_to_what_they_were_drawn_from(drawn: ValidEvent) -> None:
    change = parse_event(drawn.event)
    assert isinstance(change, AudienceChange), change
    expected = drawn.expected
    assert (change.audience_key, change.audience_id) == (
        expected.audience_key,
        expected.audience_id,
    )
    assert change.member is expected.member
    assert (change.phone, change.email) == (expected.phone, expected.email)
    assert change.version.timestamp == expected.timestamp
    assert change.version.message_id == expected.message_id
