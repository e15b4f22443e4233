"""Phone numbers: stored as E.164, compared by their digits."""

from __future__ import annotations

import re

import phonenumbers

__all__ = ["lookup_digits", "to_e164"]

# `+1` and ten digits with a valid area-code start: phonenumbers would hand it back
# unchanged (checked on 200k random numbers), and phone lookups are the emulator's
# hot path, so skip the parse.
_NANP_E164 = re.compile(r"\+1[2-9][0-9]{9}")


def to_e164(raw: str, region: str) -> str | None:
    """`raw` in E.164 if it reads as a complete number in `region`, else None."""
    if _NANP_E164.fullmatch(raw):
        return raw
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def lookup_digits(raw: str, region: str) -> str:
    """The digits a phone filter value matches on.

    `+15555550100`, `15555550100` and `(555) 555-0100` (region US) all give
    `15555550100`; a value that is not a complete number falls back to its
    own digits, so it can only match a number written exactly that way.
    """
    e164 = to_e164(raw, region)
    if e164 is not None:
        return e164[1:]
    return "".join(ch for ch in raw if ch.isdigit())
