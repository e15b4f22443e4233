"""docs/design/events.md, rule by rule: what an Engage event means, and why a bad one is
rejected."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given

from postscript_audience_lab.emulator.segment.strategies import ValidEvent, valid_events
from postscript_audience_lab.sync.parse import (
    AudienceChange,
    Rejection,
    parse_event,
    parse_line,
    parse_payload,
)


def track(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Audience Entered",
        "messageId": "msg-1",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "properties": {"audience_key": "vip_buyers", "vip_buyers": True},
        "context": {
            "personas": {
                "computation_class": "audience",
                "computation_key": "vip_buyers",
                "computation_id": "aud_1",
            },
            "traits": {"email": "Shopper@Example.com", "phone": "+1 (555) 555-0100"},
        },
    }
    event.update(overrides)
    return event


def identify(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "identify",
        "messageId": "msg-2",
        "timestamp": "2024-05-01T12:00:00Z",
        "traits": {"vip_buyers": False, "email": "a@example.com"},
        "context": {"personas": {"computation_class": "audience", "computation_key": "vip_buyers"}},
    }
    event.update(overrides)
    return event


def change(event: object, region: str = "US") -> AudienceChange:
    result = parse_event(event, default_region=region)
    assert isinstance(result, AudienceChange), result
    return result


def reason(event: object) -> str:
    result = parse_event(event)
    assert isinstance(result, Rejection), result
    return result.reason


def test_a_track_event_reads_membership_from_properties_and_identity_from_context_traits() -> None:
    result = change(track())
    assert result.audience_key == "vip_buyers"
    assert result.audience_id == "aud_1"
    assert result.member is True
    assert result.email == "shopper@example.com"
    assert result.phone == "+15555550100"
    assert result.version.message_id == "msg-1"
    assert result.version.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_an_identify_event_reads_membership_and_email_from_traits() -> None:
    result = change(identify())
    assert result.member is False
    assert result.email == "a@example.com"
    assert result.phone is None
    assert result.audience_id is None


@pytest.mark.parametrize(
    ("value", "member"),
    [("true", True), ("TRUE", True), ("True", True), ("false", False), ("FaLsE", False)],
)
def test_string_booleans_are_read_in_any_case(value: str, member: bool) -> None:
    assert change(track(properties={"vip_buyers": value})).member is member


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "", ["true"], {"x": 1}])
def test_a_membership_value_that_is_not_a_boolean_rejects_the_event(value: object) -> None:
    assert "vip_buyers" in reason(track(properties={"vip_buyers": value, "other": 1}))


def test_a_journey_step_without_a_value_means_entered() -> None:
    event = track(properties={"journey": "welcome"})
    event["context"]["personas"]["computation_class"] = "journey_step"
    assert change(event).member is True


def test_an_audience_event_without_a_value_is_rejected_with_the_key_named() -> None:
    assert "no value for the audience key 'vip_buyers'" in reason(
        track(properties={"journey": "x"})
    )


def test_a_track_event_with_empty_properties_falls_back_to_traits() -> None:
    event = track(properties={}, traits={"vip_buyers": "false"})
    assert change(event).member is False


def test_an_identify_event_without_traits_falls_back_to_properties() -> None:
    event = identify(traits={}, properties={"vip_buyers": True})
    event["context"]["traits"] = {"email": "b@example.com"}
    assert change(event).member is True


def test_present_properties_without_the_key_do_not_fall_back_to_traits() -> None:
    event = track(properties={"something": 1}, traits={"vip_buyers": True})
    assert "no value" in reason(event)


def test_traits_email_wins_over_context_traits_email_and_is_trimmed_and_lowered() -> None:
    event = track(traits={"email": "  First@Example.COM "})
    assert change(event).email == "first@example.com"


def test_context_traits_phone_is_used_when_traits_have_none() -> None:
    event = track(traits={"email": "x@example.com"})
    assert change(event).phone == "+15555550100"


def test_traits_phone_wins_over_context_traits_phone() -> None:
    assert change(track(traits={"phone": "+44 20 7946 0958"})).phone == "+442079460958"


def test_a_phone_without_country_code_uses_the_default_region() -> None:
    event = track()
    event["context"]["traits"]["phone"] = "020 7946 0958"
    assert change(event, region="GB").phone == "+442079460958"


def test_a_test_number_that_is_possible_but_not_valid_is_accepted() -> None:
    event = track()
    event["context"]["traits"]["phone"] = "+1 555 555 5555"
    assert change(event).phone == "+15555555555"


@pytest.mark.parametrize("phone", ["not a phone", "12", "+1 555", 12.5, True])
def test_an_unusable_phone_counts_as_absent(phone: object) -> None:
    event = track()
    event["context"]["traits"]["phone"] = phone
    result = change(event)
    assert result.phone is None
    assert result.email == "shopper@example.com"


def test_an_event_with_neither_email_nor_phone_is_rejected() -> None:
    event = track()
    event["context"]["traits"] = {"phone": "nope", "email": "   "}
    assert "either email or phone is required" in reason(event)


@pytest.mark.parametrize("kind", ["page", "screen", "group", "alias", None])
def test_an_event_that_is_not_identify_or_track_is_rejected(kind: object) -> None:
    assert "only identify and track" in reason(track(type=kind))


@pytest.mark.parametrize("computation_class", ["computed_trait", None, "AUDIENCE"])
def test_an_event_that_is_not_an_audience_computation_is_rejected(
    computation_class: object,
) -> None:
    event = track()
    event["context"]["personas"]["computation_class"] = computation_class
    assert "computation_class" in reason(event)


def test_an_event_without_context_personas_is_rejected() -> None:
    event = track()
    del event["context"]["personas"]
    assert "computation_class" in reason(event)


@pytest.mark.parametrize("key", [None, "", "   ", 7])
def test_a_missing_or_empty_audience_key_is_rejected(key: object) -> None:
    event = track()
    event["context"]["personas"]["computation_key"] = key
    assert "computation_key" in reason(event)


def test_timestamps_are_compared_as_instants_whatever_the_offset() -> None:
    utc = change(track(timestamp="2024-05-01T12:00:00Z"))
    paris = change(track(timestamp="2024-05-01T14:00:00+02:00"))
    new_york = change(track(timestamp="2024-05-01T07:00:00.000-05:00"))
    assert utc.version.timestamp == paris.version.timestamp == new_york.version.timestamp
    later_but_smaller_string = change(track(timestamp="2024-05-01T08:00:00-05:00"))
    assert later_but_smaller_string.version > paris.version


def test_timestamp_falls_back_to_original_timestamp_then_received_at() -> None:
    event = track(originalTimestamp="2024-05-02T00:00:00Z", receivedAt="2024-05-03T00:00:00Z")
    del event["timestamp"]
    assert change(event).version.timestamp.day == 2
    del event["originalTimestamp"]
    assert change(event).version.timestamp.day == 3


def test_an_event_without_any_timestamp_is_rejected() -> None:
    event = track()
    del event["timestamp"]
    assert "no timestamp, originalTimestamp or receivedAt" in reason(event)


def test_an_unreadable_timestamp_is_rejected_with_the_value_shown() -> None:
    assert "'yesterday'" in reason(track(timestamp="yesterday"))


def test_a_timestamp_that_is_not_a_string_is_rejected() -> None:
    assert "expected an ISO-8601 timestamp string" in reason(track(timestamp=1714564800))


def test_a_timestamp_that_leaves_the_calendar_in_utc_is_rejected_not_raised() -> None:
    assert "out of range in UTC" in reason(track(timestamp="0001-01-01T00:00:00+01:00"))
    assert "out of range in UTC" in reason(track(timestamp="9999-12-31T23:30:00-01:00"))


def test_a_missing_message_id_is_replaced_by_a_hash_of_the_canonical_event() -> None:
    event = track()
    del event["messageId"]
    reordered = json.loads(json.dumps(event, sort_keys=True))
    first, second = change(event), change(reordered)
    assert first.version.message_id.startswith("sha256:")
    assert first.version.message_id == second.version.message_id
    other = copy.deepcopy(event)
    other["timestamp"] = "2024-05-01T12:00:01Z"
    assert change(other).version.message_id != first.version.message_id


def test_ties_on_timestamp_are_broken_by_the_greater_message_id() -> None:
    assert change(track(messageId="b")).version > change(track(messageId="a")).version


def test_an_event_that_is_not_an_object_is_rejected() -> None:
    assert "not a JSON object" in reason(["track"])


def test_a_batch_yields_one_result_per_event_and_a_bad_one_does_not_stop_the_rest() -> None:
    results = list(parse_payload({"batch": [track(), {"type": "page"}, identify()]}, 4))
    assert [type(result) for result in results] == [AudienceChange, Rejection, AudienceChange]
    rejection = results[1]
    assert isinstance(rejection, Rejection)
    assert rejection.line == 4


def test_a_batch_that_is_not_a_list_is_rejected() -> None:
    (result,) = parse_payload({"batch": "oops"})
    assert isinstance(result, Rejection)
    assert "list" in result.reason


def test_a_line_of_bad_json_is_rejected_with_its_line_number() -> None:
    (result,) = parse_line('{"type": "track",', 17)
    assert isinstance(result, Rejection)
    assert "line 17 is not valid JSON" in result.reason


def test_a_line_that_was_not_utf8_is_rejected_alone() -> None:
    undecodable = b'{"type": "track", "x": "\xff"}'.decode("utf-8", "surrogateescape")
    (result,) = parse_line(undecodable, 5)
    assert isinstance(result, Rejection)
    assert "line 5 is not UTF-8 text" in result.reason


@pytest.mark.parametrize("where", ["computation_key", "email", "messageId"])
def test_an_unpaired_surrogate_in_a_field_the_engine_keeps_rejects_the_event(where: str) -> None:
    event = track(messageId="m\ud800" if where == "messageId" else "m1")
    if where == "computation_key":
        event["context"]["personas"]["computation_key"] = "vip\ud800"
        event["properties"] = {"vip\ud800": True}
    if where == "email":
        event["context"]["traits"]["email"] = "a\udc00@example.com"
    assert "unpaired surrogate" in reason(event)


def test_a_missing_message_id_is_hashed_even_when_the_event_holds_a_lone_surrogate() -> None:
    event = track(note="\ud800")
    del event["messageId"]
    assert change(event).version.message_id.startswith("sha256:")


def test_a_blank_line_is_skipped() -> None:
    assert parse_line("   \n", 3) == []


@given(valid_events())
def test_every_valid_engage_spelling_is_read_as_the_generator_meant(valid: ValidEvent) -> None:
    result = change(valid.event)
    expected = valid.expected
    assert result.audience_key == expected.audience_key
    assert result.audience_id == expected.audience_id
    assert result.member is expected.member
    assert result.phone == expected.phone
    assert result.email == expected.email
    assert result.version.timestamp == expected.timestamp
    assert result.version.message_id == expected.message_id


# -- hostile input: every line becomes a rejection with a reason, never an exception ------

GOOD_LINE = json.dumps(track())
POISON_LINES = {
    "an integer of 5,000 digits": '{"type": "track", "n": ' + "9" * 5000 + "}",
    "JSON nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "an event nested 980 deep": '{"type":"track","properties":' + '{"a":' * 980 + "1" + "}" * 981,
    "NaN": '{"type": "track", "timestamp": NaN}',
    "Infinity": '{"type": "track", "n": -Infinity}',
}


@pytest.mark.parametrize("name", sorted(POISON_LINES))
def test_a_poison_line_is_rejected_with_a_reason_and_the_next_line_still_parses(
    name: str,
) -> None:
    rejected = parse_line(POISON_LINES[name], 7)
    accepted = parse_line(GOOD_LINE, 8)

    assert len(rejected) == 1
    assert isinstance(rejected[0], Rejection)
    assert rejected[0].line == 7
    assert "line 7" in rejected[0].reason
    assert len(repr(rejected[0].event)) < 1000
    assert isinstance(accepted[0], AudienceChange)


def test_a_line_nested_within_the_limit_is_read_normally() -> None:
    deep = '{"type":"track","extra":' + "[" * 60 + "]" * 60 + "}"

    (result,) = parse_line(deep, 1)

    assert isinstance(result, Rejection)
    assert "nests" not in result.reason  # rejected for what it lacks, not for its depth


def test_an_audience_key_that_is_not_a_string_is_named_for_its_type() -> None:
    event = track()
    event["context"]["personas"]["computation_key"] = 42

    assert reason(event) == (
        "context.personas.computation_key is 42 (a number); expected the audience key as a string"
    )


@pytest.mark.parametrize("audience_id", [{"id": 1}, [1], True, 1.5])
def test_an_audience_id_that_is_not_a_string_or_integer_is_rejected(audience_id: object) -> None:
    event = track()
    event["context"]["personas"]["computation_id"] = audience_id

    assert "computation_id is" in reason(event)


def test_an_integer_audience_id_is_kept_as_its_digits() -> None:
    event = track()
    event["context"]["personas"]["computation_id"] = 1234

    assert change(event).audience_id == "1234"


def test_a_timestamp_later_than_the_run_accepts_is_rejected_as_a_clock_error() -> None:
    latest = datetime(2024, 5, 2, tzinfo=UTC)

    future = parse_event(track(timestamp="9999-01-01T00:00:00Z"), not_after=latest)
    present = parse_event(track(), not_after=latest)

    assert isinstance(future, Rejection)
    assert "later than 2024-05-02T00:00:00.000000Z" in future.reason
    assert isinstance(present, AudienceChange)


def test_an_email_longer_than_an_address_can_be_is_rejected_at_intake() -> None:
    longest = "a" * 64 + "@" + "b" * 185 + ".com"  # 254 characters: still an address
    too_long = "a" * 64 + "@" + "b" * 186 + ".com"

    kept = parse_event(identify(traits={"vip_buyers": True, "email": longest}))
    refused = parse_event(identify(traits={"vip_buyers": True, "email": too_long}))

    assert isinstance(kept, AudienceChange)
    assert kept.email == longest
    assert isinstance(refused, Rejection)
    assert "at most 254 (RFC 5321)" in refused.reason
