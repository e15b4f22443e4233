"""Who an event is about: phones and emails normalised as docs/design/events.md says.

The generator knows every shopper's canonical identity (`Shopper.identity`);
the tests use these helpers to check that every spelling the generator types
reads back as that identity, in the form the engine is required to use
(E.164 phones, trimmed lower-case emails).
"""

from __future__ import annotations

import phonenumbers

__all__ = ["normalise_email", "normalise_phone"]


def normalise_phone(raw: str | None, region: str = "US") -> str | None:
    """E.164 form of a typed phone number, or None when it is not a possible number."""
    if raw is None or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalise_email(raw: str | None) -> str | None:
    """Trimmed, lower-cased email, or None when nothing is left."""
    if raw is None:
        return None
    email = raw.strip().lower()
    return email or None
