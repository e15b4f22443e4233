"""Property: the store's indexed lookups answer exactly what a scan of every subscriber would."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from postscript_audience_lab.emulator.postscript.model.store import (
    Store,
    SubscriberDraft,
    SubscriberPatch,
)
from postscript_audience_lab.emulator.postscript.web.query import parse_query

NATIONAL = st.integers(min_value=0, max_value=29).map(lambda n: f"55555501{n:02d}")
LOCAL = st.sampled_from(["ada", "bob", "cy", "dee"])
DOMAIN = st.sampled_from(["example.com", "shop.org"])


def _email(local: str, domain: str, upper: bool) -> str:
    email = f"{local}@{domain}"
    return email.upper() if upper else email


def written(national: str, style: int) -> str:
    """One of the ways a person writes the same US number."""
    area, exchange, line = national[:3], national[3:6], national[6:]
    return [
        f"+1{national}",
        f"1{national}",
        f"({area}) {exchange}-{line}",
        f"{area}.{exchange}.{line}",
    ][style]


@dataclass
class Person:
    national: str | None
    email: str | None


PEOPLE = st.lists(
    st.builds(
        Person,
        national=st.none() | NATIONAL,
        email=st.none() | st.builds(_email, LOCAL, DOMAIN, st.booleans()),
    ),
    max_size=25,
).map(
    # phone numbers are unique in a shop
    lambda people: list({p.national or f"none{i}": p for i, p in enumerate(people)}.values())
)
LATE_EMAILS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=24), st.builds(_email, LOCAL, DOMAIN, st.booleans())
    ),
    max_size=10,
)
PHONE_QUERY = st.tuples(NATIONAL, st.integers(min_value=0, max_value=3))
EMAIL_QUERY = st.builds(_email, LOCAL, DOMAIN, st.booleans())


def _ids(store: Store, params: list[tuple[str, str]]) -> list[str]:
    subscribers, _ = parse_query(params, "US").run(store, page_size=1000)
    return [s.id for s in subscribers]


@settings(max_examples=150, deadline=None)
@given(
    people=PEOPLE,
    late_emails=LATE_EMAILS,
    phones=st.lists(PHONE_QUERY, min_size=1, max_size=3),
    emails=st.lists(EMAIL_QUERY, min_size=1, max_size=3),
)
def test_indexed_phone_and_email_lookups_match_a_full_scan(
    people: list[Person],
    late_emails: list[tuple[int, str]],
    phones: list[tuple[str, int]],
    emails: list[str],
) -> None:
    store = Store()
    created = store.create(
        [
            SubscriberDraft(phone_number=f"+1{p.national}" if p.national else None, email=p.email)
            for p in people
        ]
    )
    for index, email in late_emails:
        if index < len(created):
            store.patch(created[index].id, SubscriberPatch(email=email))
    everyone = list(store)

    for national, style in phones:
        expected = [s.id for s in everyone if s.phone_number == f"+1{national}"]
        assert _ids(store, [("phone_number__eq", written(national, style))]) == expected
    wanted = {f"+1{national}" for national, _ in phones}
    expected_in = [s.id for s in everyone if s.phone_number in wanted]
    joined = ",".join(written(n, style) for n, style in phones)
    assert _ids(store, [("phone_number__in", joined)]) == expected_in
    assert _ids(store, [("phone_number__in", written(n, s)) for n, s in phones]) == expected_in

    for email in emails:
        expected = [s.id for s in everyone if s.email and s.email.lower() == email.lower()]
        assert _ids(store, [("email__eq", email)]) == expected
    lowered = {e.lower() for e in emails}
    expected_in = [s.id for s in everyone if s.email and s.email.lower() in lowered]
    assert _ids(store, [("email__in", ",".join(emails))]) == expected_in
