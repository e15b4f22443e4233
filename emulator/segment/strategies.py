"""Hypothesis strategies: small membership histories and the ways Segment delivers them.

`audience_traffic()` draws a few shoppers and audiences, a short history of
Engage events with explicit versions (timestamps drawn from a handful of
minutes so ties happen on purpose, messageIds whose order is drawn too), and
a delivery: every event at least once plus drawn duplicates, in a drawn
permutation, cut into one or more runs. Everything is drawn as small integers
and lists (no `random.shuffle`), so a failing case shrinks to a few events in
almost-original order.

Some shoppers give Segment a phone that Postscript does not know: their
subscriber is seeded with the email alone, so the engine must fall back from
the phone to the email (docs/design/convergence.md#identity); their events always carry the email.

With `late_subscribers=True` some shoppers are not subscribers yet: each
gets an arrival run (0 = seeded from the start, k = seeded just before run k,
`len(runs)` = never), and `seeds_before_run(k)` lists whom to seed. Their
changes must park until the subscriber exists (docs/design/convergence.md#nothing-lost).

Ground truth follows docs/design/convergence.md. `expected` maps (identity, audience_key) to the
membership the greatest-version event says (identity = the E.164 phone the
subscriber has in Postscript, else the lower-cased email). An engine drains
once per run and writes the state it has reached, so `expected_entered_exited`
lists, per pair, the changes between the membership at the end of consecutive
runs — the state after run k being the winner among all events delivered in
runs 1..k, starting from "not a member" — as "Entered" (false -> true) or
"Exited" (true -> false). Flips that happen and un-happen inside one run post
nothing. A late subscriber starts from "not a member" in the run it arrives; a
shopper who never arrives is in neither dict (its pairs are in
`never_seeded`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from hypothesis import strategies as st

from postscript_audience_lab.emulator.segment.events import (
    Audience,
    ComputationClass,
    EventKind,
    Shopper,
    audience_event,
    email_spellings,
    format_timestamp,
    phone_spellings,
)

__all__ = [
    "ExpectedParse",
    "HistoryEvent",
    "Traffic",
    "ValidEvent",
    "audience_traffic",
    "valid_events",
]

PairKey = tuple[str, str]  # (identity, audience_key)
Identifiers = Literal["both", "phone", "email"]
# "unknown_phone": Segment has phone and email, Postscript only the email
Kind = Literal["both", "phone", "email", "unknown_phone"]

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_KEYS = ["vip_buyers", "winback_90d", "cart_abandoners", "welcome__step_1", "high_aov"]
_OFFSETS = [0, 0, 120, -300]  # minutes; the same instant written with other offsets


class HistoryEvent(NamedTuple):
    """One drawn event with its version, kept for the repr and the ground truth."""

    shopper: int
    audience: str
    member: bool
    minute: int
    message_id: str
    event: dict[str, Any]

    @property
    def version(self) -> tuple[datetime, str]:
        return (START + timedelta(minutes=self.minute), self.message_id)


@dataclass
class Traffic:
    shoppers: list[Shopper]
    audiences: list[Audience]
    history: list[HistoryEvent]
    delivered: list[list[int]]  # per run, indices into `history`, in delivery order
    subscribers: list[dict[str, Any]]  # seeded before the first run
    expected: dict[PairKey, bool]
    expected_entered_exited: dict[PairKey, list[str]]
    arrivals: list[int]  # per shopper: the run before which it is seeded
    never_seeded: set[PairKey]
    unknown_phones: list[bool]  # per shopper: Postscript does not know its phone

    def seeds_before_run(self, run: int) -> list[dict[str, Any]]:
        """Subscribers to seed just before run `run` (0 gives `subscribers`)."""
        return [
            _seed(shopper, unknown)
            for shopper, unknown, at in zip(
                self.shoppers, self.unknown_phones, self.arrivals, strict=True
            )
            if at == run
        ]

    def identity_of(self, identifier: str) -> str:
        """The identity key (as in `expected`) of the shopper with this phone or email."""
        for shopper, unknown in zip(self.shoppers, self.unknown_phones, strict=True):
            if identifier in (shopper.phone, shopper.email):
                return _identity(shopper, unknown)
        raise KeyError(f"no shopper has {identifier}")

    @property
    def runs(self) -> list[list[dict[str, Any]]]:
        return [[self.history[i].event for i in run] for run in self.delivered]

    def __repr__(self) -> str:
        lines = ["Traffic("]
        lines.append("  shoppers: " + "; ".join(_describe(s) for s in self.shoppers))
        lines.append("  history:")
        for index, item in enumerate(self.history):
            event = item.event
            identifiers = event.get("traits", {}) | event.get("context", {}).get("traits", {})
            typed = {k: identifiers[k] for k in ("phone", "email") if k in identifiers}
            member_value = (event.get("traits") or event.get("properties") or {}).get(
                item.audience, "<absent>"
            )
            lines.append(
                f"    #{index} s{item.shopper} {item.audience}={member_value!r}"
                f" ({'member' if item.member else 'not member'}) at +{item.minute}min"
                f" {item.message_id} {event['type']} {typed} ts={event['timestamp']}"
            )
        runs = " | ".join(" ".join(f"#{i}" for i in run) or "(empty)" for run in self.delivered)
        lines.append(f"  runs: {runs}")
        if any(self.arrivals):
            lines.append(f"  seeded before run: {self.arrivals} (never: {len(self.delivered)})")
        lines.append(f"  expected: {self.expected}")
        lines.append(f"  expected_entered_exited: {self.expected_entered_exited}")
        lines.append(")")
        return "\n".join(lines)


def _describe(shopper: Shopper) -> str:
    return f"{shopper.user_id} phone={shopper.phone} email={shopper.email}"


def _identity(shopper: Shopper, unknown_phone: bool) -> str:
    """The subscriber's name in the ground truth: its Postscript phone, else its email."""
    if unknown_phone:
        assert shopper.email is not None
        return shopper.email
    return shopper.identity


def _shopper(index: int, kind: Kind) -> Shopper:
    phone = f"+1555555{100 + index:04d}" if kind != "email" else None
    email = f"shopper{index}@example.com" if kind != "phone" else None
    return Shopper(user_id=f"user_{index}", phone=phone, email=email)


@st.composite
def _audience(draw: st.DrawFn, index: int) -> Audience:
    computation: ComputationClass = draw(st.sampled_from(["audience", "journey_step"]))
    send_as: EventKind = (
        "track" if computation == "journey_step" else draw(st.sampled_from(["identify", "track"]))
    )
    return Audience(_KEYS[index % len(_KEYS)], f"aud_{index:02d}TEST", computation, send_as)


@st.composite
def _spelled_event(
    draw: st.DrawFn,
    shopper: Shopper,
    audience: Audience,
    member: bool,
    minute: int,
    message_id: str,
    *,
    unknown_phone: bool = False,
) -> dict[str, Any]:
    """A Segment event for this membership, with drawn spellings (all valid under
    docs/design/events.md).

    A shopper whose phone Postscript does not know always carries the email
    (a phone alone would name nobody, and park forever).
    """
    carry: Identifiers = "both"
    if shopper.phone and shopper.email:
        choices: list[Identifiers] = (
            ["both", "email"] if unknown_phone else ["both", "phone", "email"]
        )
        carry = draw(st.sampled_from(choices))
    phone = email = None
    if shopper.phone and carry != "email":
        phone = draw(st.sampled_from(phone_spellings(shopper.phone)))
    if shopper.email and carry != "phone":
        email = draw(st.sampled_from(email_spellings(shopper.email)))
    value: bool | str | None = member
    style = draw(st.sampled_from(["bool", "string", "absent"]))
    if style == "string":
        value = draw(st.sampled_from(["true", "True"] if member else ["false", "FALSE"]))
    elif style == "absent" and member and audience.computation_class == "journey_step":
        value = None
    instant = START + timedelta(minutes=minute)
    offset = draw(st.sampled_from(_OFFSETS))
    return audience_event(
        kind=audience.send_as,
        audience=audience,
        user_id=shopper.user_id,
        member_value=value,
        entered=member,
        phone=phone,
        email=email,
        timestamp=format_timestamp(instant, offset),
        received_at=format_timestamp(instant + timedelta(seconds=2)),
        message_id=message_id,
    )


@st.composite
def audience_traffic(
    draw: st.DrawFn,
    max_users: int = 3,
    max_audiences: int = 2,
    max_events: int = 12,
    max_runs: int = 3,
    late_subscribers: bool = False,
) -> Traffic:
    """A small history, delivered with duplicates in any order across 1..max_runs runs."""
    kinds: list[Kind] = draw(
        st.lists(
            st.sampled_from(["both", "phone", "email", "unknown_phone"]),
            min_size=1,
            max_size=max_users,
        )
    )
    shoppers = [_shopper(i, kind) for i, kind in enumerate(kinds)]
    unknown_phones = [kind == "unknown_phone" for kind in kinds]
    audience_count = draw(st.integers(1, max_audiences))
    audiences = [draw(_audience(j)) for j in range(audience_count)]

    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(shoppers) - 1),
                st.integers(0, audience_count - 1),
                st.booleans(),
                st.integers(0, 3),  # minute: few values, so timestamps tie
                st.integers(0, 2),  # messageId rank: decides ties
            ),
            min_size=1,
            max_size=max_events,
        )
    )
    history = []
    for index, (s, a, member, minute, rank) in enumerate(raw):
        message_id = f"personas_{rank}_{index:02d}"
        event = draw(
            _spelled_event(
                shoppers[s],
                audiences[a],
                member,
                minute,
                message_id,
                unknown_phone=unknown_phones[s],
            )
        )
        history.append(HistoryEvent(s, audiences[a].key, member, minute, message_id, event))

    duplicates = draw(st.lists(st.integers(0, len(history) - 1), max_size=len(history)))
    sequence = list(range(len(history))) + duplicates
    order = draw(st.permutations(range(len(sequence))))
    delivered = [sequence[position] for position in order]
    cuts = draw(st.lists(st.integers(0, len(delivered)), max_size=max_runs - 1))
    bounds = [0, *sorted(cuts), len(delivered)]
    runs = [delivered[lo:hi] for lo, hi in itertools.pairwise(bounds)]

    arrivals = [0] * len(shoppers)
    if late_subscribers:
        arrival = st.integers(0, len(runs))
        arrivals = draw(st.lists(arrival, min_size=len(shoppers), max_size=len(shoppers)))
    identities = [
        _identity(shopper, unknown)
        for shopper, unknown in zip(shoppers, unknown_phones, strict=True)
    ]
    expected, transitions = _truth(identities, history, runs, arrivals)
    mentioned = {(identities[item.shopper], item.audience): item.shopper for item in history}
    return Traffic(
        shoppers=shoppers,
        audiences=audiences,
        history=history,
        delivered=runs,
        subscribers=[
            _seed(shopper, unknown)
            for shopper, unknown, at in zip(shoppers, unknown_phones, arrivals, strict=True)
            if at == 0
        ],
        expected=expected,
        expected_entered_exited=transitions,
        arrivals=arrivals,
        never_seeded={pair for pair, s in mentioned.items() if arrivals[s] == len(runs)},
        unknown_phones=unknown_phones,
    )


def _truth(
    identities: list[str],
    history: list[HistoryEvent],
    runs: list[list[int]],
    arrivals: list[int],
) -> tuple[dict[PairKey, bool], dict[PairKey, list[str]]]:
    winners: dict[PairKey, HistoryEvent] = {}
    state: dict[PairKey, bool] = {}
    transitions: dict[PairKey, list[str]] = {}
    for number, run in enumerate(runs):
        for index in run:
            item = history[index]
            pair = (identities[item.shopper], item.audience)
            if arrivals[item.shopper] < len(runs):
                transitions.setdefault(pair, [])
            if pair not in winners or item.version > winners[pair].version:
                winners[pair] = item
        for pair, winner in winners.items():
            if arrivals[winner.shopper] > number:
                continue  # no subscriber yet: the change waits (parked)
            if winner.member != state.get(pair, False):
                transitions[pair].append("Entered" if winner.member else "Exited")
            state[pair] = winner.member
    expected = {
        pair: winner.member
        for pair, winner in winners.items()
        if arrivals[winner.shopper] < len(runs)
    }
    return expected, transitions


def _seed(shopper: Shopper, unknown_phone: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if shopper.phone and not unknown_phone:
        item["phone_number"] = shopper.phone
    if shopper.email:
        item["email"] = shopper.email
    return item


class ExpectedParse(NamedTuple):
    """What a parser that follows docs/design/events.md must read out of a `ValidEvent`."""

    audience_key: str
    audience_id: str
    member: bool
    phone: str | None
    email: str | None
    timestamp: datetime
    message_id: str


class ValidEvent(NamedTuple):
    event: dict[str, Any]
    expected: ExpectedParse


@st.composite
def valid_events(draw: st.DrawFn) -> ValidEvent:
    """One valid Engage event (any kind, spelling, boolean form, offset) and its reading."""
    kind: Identifiers = draw(st.sampled_from(["both", "phone", "email"]))
    shopper = _shopper(draw(st.integers(0, 99)), kind)
    audience = draw(_audience(draw(st.integers(0, len(_KEYS) - 1))))
    member = draw(st.booleans())
    minute = draw(st.integers(0, 10_000))
    message_id = f"personas_{draw(st.integers(0, 10**6))}"
    event = draw(_spelled_event(shopper, audience, member, minute, message_id))
    identifiers = event.get("traits", {}) | event.get("context", {}).get("traits", {})
    expected = ExpectedParse(
        audience_key=audience.key,
        audience_id=audience.id,
        member=member,
        phone=shopper.phone if "phone" in identifiers else None,
        email=shopper.email if "email" in identifiers else None,
        timestamp=START + timedelta(minutes=minute),
        message_id=message_id,
    )
    return ValidEvent(event, expected)
