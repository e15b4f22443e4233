"""A world of shoppers and audiences, its history of membership changes, and the ground truth.

A `Scenario` plays an Engage space forward: a backfill (every shopper is in
every audience with probability `backfill_p`, and Engage sends "entered" for
each member), then `rounds` recomputations in which `flip_rate` of the
memberships flip — half of the flips are members leaving, the other half an
equal number (on average) of non-members joining, so audience sizes stay near
`backfill_p`. With `tie_rate`, a flip is followed by a conflicting event with
the very same timestamp, so the winner is decided by the messageId tie-break.

`changes()` yields the history in true version order (timestamp, then
messageId) and is cheap: only small tuples. `events()` renders them into the
Segment events of `emulator.segment.events`. `ground_truth()` folds the
history by version exactly as docs/design/convergence.md defines convergence. Memory grows with
the population (users × audiences), never with the number of events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from postscript_audience_lab.emulator.segment.events import (
    Audience,
    EventKind,
    Shopper,
    audience_event,
    email_spellings,
    format_timestamp,
    new_message_id,
    phone_spellings,
)

__all__ = [
    "Change",
    "GroundTruth",
    "Population",
    "Scenario",
    "ScenarioConfig",
    "Transition",
]

Transition = str  # "Entered" | "Exited"
Pair = tuple[int, int]  # (shopper index, audience index)

_AUDIENCE_NAMES = [
    "vip_buyers",
    "cart_abandoners_7d",
    "order_completed_last_30days",
    "winback_90d",
    "high_aov",
    "browsed_not_bought",
    "subscribers_sms_engaged",
    "welcome_journey__step_2",
]


@dataclass(frozen=True)
class Population:
    """Shoppers 0..users-1: half with phone and email, a quarter phone only, a quarter email."""

    users: int
    audiences: int

    def shopper(self, index: int) -> Shopper:
        kind = index % 4  # 0, 1: phone + email; 2: phone only; 3: email only
        phone = f"+1555{2_000_000 + index:07d}" if kind != 3 else None
        email = f"shopper{index:05d}@example.com" if kind != 2 else None
        return Shopper(user_id=f"user_{index:05d}", phone=phone, email=email)

    def shoppers(self) -> Iterator[Shopper]:
        return (self.shopper(i) for i in range(self.users))

    def audience(self, index: int) -> Audience:
        """Every fourth computation is a journey step (sent as `track`); the rest alternate."""
        base = _AUDIENCE_NAMES[index % len(_AUDIENCE_NAMES)]
        key = base if index < len(_AUDIENCE_NAMES) else f"{base}_{index}"
        audience_id = f"aud_{index:02d}{_stable_suffix(key)}"
        if index % 4 == 3:
            return Audience(key, audience_id, "journey_step", "track")
        kind: EventKind = "identify" if index % 2 == 0 else "track"
        return Audience(key, audience_id, "audience", kind)

    def all_audiences(self) -> list[Audience]:
        return [self.audience(j) for j in range(self.audiences)]


class Change(NamedTuple):
    """One membership event of the history, before it is spelled out as a Segment event."""

    user: int
    audience: int
    member: bool
    timestamp: datetime
    message_id: str

    @property
    def version(self) -> tuple[datetime, str]:
        return (self.timestamp, self.message_id)


@dataclass(frozen=True)
class ScenarioConfig:
    users: int = 500
    audiences: int = 4
    backfill_p: float = 0.3
    rounds: int = 3
    flip_rate: float = 0.1
    tie_rate: float = 0.005
    string_bool_rate: float = 0.05
    omitted_journey_value_rate: float = 0.5
    single_identifier_rate: float = 0.1
    seed: int = 1
    start: datetime = field(default_factory=lambda: datetime(2024, 5, 1, tzinfo=UTC))


@dataclass
class GroundTruth:
    """Per (shopper, audience) mentioned by the history: the winner and the transitions.

    `final[pair]` is the membership the event with the greatest version says.
    `transitions(pair)` is what a correct engine applying events one at a time
    in version order would post, starting from "not a member": they alternate
    from "Entered", so only their number is kept (memory stays per pair, not
    per event). An engine that drains everything in one run posts only the
    net change: "Entered" where `final[pair]` is true.
    """

    final: dict[Pair, bool] = field(default_factory=dict)
    transition_counts: dict[Pair, int] = field(default_factory=dict)
    events: int = 0

    def transitions(self, pair: Pair) -> list[Transition]:
        return [("Entered", "Exited")[i % 2] for i in range(self.transition_counts.get(pair, 0))]


class Scenario:
    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.population = Population(config.users, config.audiences)

    def changes(self) -> Iterator[Change]:
        """The history in version order; re-iterable, the same for the same config."""
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:scenario")
        members: set[Pair] = set()
        pairs = [(u, a) for u in range(cfg.users) for a in range(cfg.audiences)]

        backfill = [(pair, True) for pair in pairs if rng.random() < cfg.backfill_p]
        yield from self._timeline(rng, backfill, cfg.start, timedelta(hours=6), members)

        leave_p = cfg.flip_rate / 2
        join_p = leave_p * cfg.backfill_p / (1 - cfg.backfill_p) if cfg.backfill_p < 1 else 0.0
        for round_number in range(1, cfg.rounds + 1):
            flips = [
                (pair, pair not in members)
                for pair in pairs
                if rng.random() < (leave_p if pair in members else join_p)
            ]
            begin = cfg.start + timedelta(hours=6 + 3 * (round_number - 1))
            yield from self._timeline(rng, flips, begin, timedelta(hours=1), members)

    def _timeline(
        self,
        rng: random.Random,
        flips: list[tuple[Pair, bool]],
        begin: datetime,
        span: timedelta,
        members: set[Pair],
    ) -> Iterator[Change]:
        """Spread one computation's flips over `span` in random order with rising timestamps."""
        rng.shuffle(flips)
        mean_gap_ms = span / timedelta(milliseconds=1) / max(len(flips), 1)
        at, end = begin, begin + span
        for (user, audience), member in flips:
            at = min(at + timedelta(milliseconds=rng.randint(0, int(2 * mean_gap_ms))), end)
            first = Change(user, audience, member, at, new_message_id(rng))
            if rng.random() < self.config.tie_rate:
                rival = Change(user, audience, not member, at, new_message_id(rng))
                first, second = sorted((first, rival), key=lambda c: c.message_id)
                yield first
                yield second
                winner = second
            else:
                yield first
                winner = first
            if winner.member:
                members.add((user, audience))
            else:
                members.discard((user, audience))

    def ground_truth(self) -> GroundTruth:
        """Fold the history by version (docs/design/convergence.md#state): greatest (timestamp,
        messageId) wins."""
        truth = GroundTruth()
        versions: dict[Pair, tuple[datetime, str]] = {}
        for change in self.changes():
            truth.events += 1
            pair = (change.user, change.audience)
            if pair in versions and versions[pair] > change.version:
                raise AssertionError(f"history out of version order at {change}")
            before = truth.final.get(pair, False)
            versions[pair] = change.version
            truth.final[pair] = change.member
            flipped = int(change.member != before)
            truth.transition_counts[pair] = truth.transition_counts.get(pair, 0) + flipped
        return truth

    def events(self) -> Iterator[dict[str, Any]]:
        """The history spelled out as Segment events, in true time order."""
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:spelling")
        audiences = self.population.all_audiences()
        for change in self.changes():
            yield self.render(change, audiences[change.audience], rng)

    def render(self, change: Change, audience: Audience, rng: random.Random) -> dict[str, Any]:
        cfg = self.config
        shopper = self.population.shopper(change.user)
        phone = rng.choice(phone_spellings(shopper.phone)) if shopper.phone else None
        email = rng.choice(email_spellings(shopper.email)) if shopper.email else None
        if phone and email and rng.random() < cfg.single_identifier_rate:
            if rng.random() < 0.5:
                phone = None
            else:
                email = None
        value: bool | str | None = change.member
        journey_entry = audience.computation_class == "journey_step" and change.member
        if journey_entry and rng.random() < cfg.omitted_journey_value_rate:
            # a journey step without a value is "entered" (docs/design/events.md#membership-value)
            value = None
        elif rng.random() < cfg.string_bool_rate:
            value = rng.choice(["true", "TRUE", "True"] if change.member else ["false", "FALSE"])
        received = change.timestamp + timedelta(milliseconds=rng.randint(20, 4000))
        return audience_event(
            kind=audience.send_as,
            audience=audience,
            user_id=shopper.user_id,
            member_value=value,
            entered=change.member,
            phone=phone,
            email=email,
            timestamp=format_timestamp(change.timestamp),
            received_at=format_timestamp(received),
            message_id=change.message_id,
        )


def _stable_suffix(key: str) -> str:
    """A short, deterministic id tail for an audience key (Engage ids look random)."""
    rng = random.Random(f"audience:{key}")
    return "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(22))
