"""Hypothesis strategies for property tests of your own integration.

They need the `testing` extra: `pip install 'postscript-audience-lab[testing]'`.

- `subscribers()`: one subscriber to seed (`Postscript.seed(**drawn)`): a
  phone, an email or both, written as people write them, with custom
  properties and tags the emulator accepts;
- `subscriber_lists()`: several at once, no two sharing a phone
  (`Postscript.seed_many(drawn)`);
- `audience_events()`: one valid Segment Engage audience event, with what a
  reader that follows docs/design/events.md must make of it (`ValidEvent`);
- `audience_traffic()`: a short membership history and the way Segment
  delivers it — duplicated, reordered, cut into runs — with its ground
  truth (`Traffic`, docs/design/convergence.md).

The last two are the lab's own (emulator/segment/strategies.py), re-exported.
"""

from __future__ import annotations

from typing import Any

import phonenumbers

try:
    from hypothesis import strategies as st
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError(
        "postscript_audience_lab.emulator.testing.strategies needs hypothesis: "
        "pip install 'postscript-audience-lab[testing]'"
    ) from missing

from postscript_audience_lab.emulator.segment.strategies import (
    ExpectedParse,
    Traffic,
    ValidEvent,
    audience_traffic,
)
from postscript_audience_lab.emulator.segment.strategies import valid_events as audience_events
from postscript_audience_lab.emulator.testing.records import SubscriberSeed

__all__ = [
    "ExpectedParse",
    "Traffic",
    "ValidEvent",
    "audience_events",
    "audience_traffic",
    "subscriber_lists",
    "subscribers",
]

# Fictional ranges: 555-01xx in North America, Ofcom's drama range in the UK.
_PHONE_FORMS = [
    ("+1555555{:04d}", "E.164"),
    ("(555) 555-{:04d}", "as typed in the US"),
    ("+44 7700 900{:03d}", "UK, spaced"),
]
_NAMES = ["ada", "grace", "alan", "edsger", "barbara", "ken"]
_DOMAINS = ["example.com", "example.org", "shop.example"]
_PROPERTY_NAMES = ["Segment Audiences", "Favourite Colour", "Orders", "Last Order", "Birthday"]


@st.composite
def _phone(draw: st.DrawFn) -> str:
    form, _ = draw(st.sampled_from(_PHONE_FORMS))
    return form.format(draw(st.integers(100, 199)))


@st.composite
def _email(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(_NAMES))
    number = draw(st.integers(0, 999))
    address = f"{name}{number}@{draw(st.sampled_from(_DOMAINS))}"
    return address.upper() if draw(st.booleans()) else address


_property_value = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=20),
    st.integers(-(2**31), 2**31 - 1),
    st.lists(st.sampled_from(["vip", "winback", "cart_abandoners"]), max_size=3, unique=True),
)


@st.composite
def subscribers(draw: st.DrawFn) -> SubscriberSeed:
    """One subscriber to seed: phone and/or email, properties (at most 50) and tags."""
    which = draw(st.sampled_from(["both", "phone", "email"]))
    seed = SubscriberSeed()
    if which != "email":
        seed["phone_number"] = draw(_phone())
    if which != "phone":
        seed["email"] = draw(_email())
    properties = draw(
        st.dictionaries(st.sampled_from(_PROPERTY_NAMES), _property_value, max_size=5)
    )
    if properties:
        seed["properties"] = properties
    tags = draw(st.lists(st.sampled_from(["synced", "vip", "wholesale"]), max_size=2, unique=True))
    if tags:
        seed["tags"] = tags
    return seed


def _phone_key(seed: SubscriberSeed) -> Any:
    """Seeds must not share a phone, however it is written; any number of them may have none."""
    phone = seed.get("phone_number")
    if phone is None:
        return object()
    return phonenumbers.format_number(
        phonenumbers.parse(phone, "US"), phonenumbers.PhoneNumberFormat.E164
    )


def subscriber_lists(
    min_size: int = 0, max_size: int = 10
) -> st.SearchStrategy[list[SubscriberSeed]]:
    """Several subscribers to seed together, no two with the same phone number."""
    return st.lists(subscribers(), min_size=min_size, max_size=max_size, unique_by=_phone_key)
