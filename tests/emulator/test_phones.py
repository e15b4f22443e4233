"""Phone numbers: E.164 for storage, digits for lookups."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postscript_audience_lab.emulator.postscript.model.phones import lookup_digits, to_e164


def _slow_e164(raw: str) -> str | None:
    """What phonenumbers alone says, without the emulator's fast path."""
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if (
        phonenumbers.is_possible_number_with_reason(number)
        != phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@given(st.text(alphabet="0123456789", min_size=7, max_size=13))
def test_the_e164_fast_path_agrees_with_phonenumbers(digits: str) -> None:
    raw = f"+1{digits}"
    assert to_e164(raw, "US") == _slow_e164(raw)


@pytest.mark.parametrize(
    "written", ["+15555550100", "15555550100", "(555) 555-0100", "555.555.0100", "1 555 555 0100"]
)
def test_every_way_of_writing_a_us_number_gives_the_same_digits(written: str) -> None:
    assert lookup_digits(written, "US") == "15555550100"


@pytest.mark.parametrize("raw", ["not a phone", "555-0100", "+1555", ""])
def test_incomplete_numbers_are_not_stored(raw: str) -> None:
    assert to_e164(raw, "US") is None


def test_other_countries_keep_their_code() -> None:
    assert to_e164("+44 20 7946 0958", "US") == "+442079460958"
    assert to_e164("020 7946 0958", "GB") == "+442079460958"
