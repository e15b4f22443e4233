"""Reconcile and sync as one model (docs/design/reconcile.md), as a property.

Draw a few subscribers (one may arrive late), two audiences, Engage events and
full snapshots with versions from a handful of minutes (so events and snapshots
tie on the instant, and messageIds that sort below and above a snapshot's id),
deliver them in any order, events cut into sync runs of any size, each snapshot
a reconcile run. Once all runs are done, every (subscriber, audience) holds the
membership of the newest version among the events about it and the snapshots of
the audience, a snapshot saying *member* for those it names and *not a member*
for everyone else; and the events posted per pair alternate from the starting
membership to that end.
"""

from __future__ import annotations

import io
import itertools
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postscript_audience_lab.sync.parse import Version
from postscript_audience_lab.sync.plan import ENTERED, EXITED
from postscript_audience_lab.sync.reconcile import floor_version
from postscript_audience_lab.sync.snapshot import read_snapshot
from tests.sync.conftest import CONVERGENCE
from tests.sync.reconciling import reconcile
from tests.sync.world import World, audiences_of

pytestmark = pytest.mark.no_cover  # whole runs repeat lines other tests cover (noxfile: tests)

START = datetime(2024, 5, 1, 12, tzinfo=UTC)
AUDIENCES = ("vip", "winback")
SUBSCRIBERS = 3
SPELLINGS = ("phone", "email", "both")
SHM = Path("/dev/shm")  # noqa: S108 -- TemporaryDirectory makes a private directory inside
SCRATCH = SHM if SHM.is_dir() else None
WORLD = World()  # one app for every example; each example starts with an admin reset
# messageIds sort below ("a", "m") and above ("z") the snapshots' "reconcile:…" ids
ID_PREFIXES = ("a", "m", "z")


def phone(shopper: int) -> str:
    return f"+1555555{shopper:04d}"


def email(shopper: int) -> str:
    return f"shopper{shopper}@example.com"


def identifiers(shopper: int, spelling: str) -> dict[str, str]:
    found = {}
    if spelling in ("phone", "both"):
        found["phone"] = phone(shopper)
    if spelling in ("email", "both"):
        found["email"] = email(shopper)
    return found


@dataclass(frozen=True)
class Event:
    shopper: int
    audience: str
    member: bool
    minute: int
    message_id: str
    spelling: str

    @property
    def version(self) -> Version:
        return Version(START + timedelta(minutes=self.minute), self.message_id)

    def body(self) -> dict[str, Any]:
        return {
            "type": "identify",
            "messageId": self.message_id,
            "timestamp": (START + timedelta(minutes=self.minute)).isoformat(),
            "traits": {self.audience: self.member, **identifiers(self.shopper, self.spelling)},
            "context": {
                "personas": {"computation_class": "audience", "computation_key": self.audience}
            },
        }


@dataclass(frozen=True)
class Snapshot:
    audience: str
    minute: int
    members: tuple[tuple[int, str], ...]  # (shopper, spelling)

    @property
    def as_of(self) -> datetime:
        return START + timedelta(minutes=self.minute)

    def csv(self) -> str:
        lines = ["audience_key,phone,email"]
        for shopper, spelling in self.members:
            ids = identifiers(shopper, spelling)
            lines.append(f"{self.audience},{ids.get('phone', '')},{ids.get('email', '')}")
        return "\n".join(lines) + "\n"


Run = list[Event] | Snapshot


@dataclass(frozen=True)
class History:
    initial: dict[int, tuple[str, ...]]  # the lists the shop starts with
    late: int | None  # the run before which the last shopper is seeded (None: from the start)
    events: list[Event]
    snapshots: list[Snapshot]
    runs: list[Run]

    def expected(self) -> dict[tuple[int, str], bool]:
        """Per (subscriber, audience), what the newest version over events and snapshots says."""
        truth: dict[tuple[int, str], bool] = {}
        for shopper in range(SUBSCRIBERS):
            for audience in AUDIENCES:
                candidates: list[tuple[Version, bool]] = [
                    (event.version, event.member)
                    for event in self.events
                    if (event.shopper, event.audience) == (shopper, audience)
                ]
                candidates += [
                    (floor_version(snapshot.as_of), shopper in dict(snapshot.members))
                    for snapshot in self.snapshots
                    if snapshot.audience == audience
                ]
                start = audience in self.initial.get(shopper, ())
                truth[shopper, audience] = max(candidates)[1] if candidates else start
        return truth


@st.composite
def histories(draw: st.DrawFn) -> History:
    late = draw(st.booleans())
    initial = {
        shopper: tuple(draw(st.lists(st.sampled_from(AUDIENCES), unique=True)))
        for shopper in range(SUBSCRIBERS - 1 if late else SUBSCRIBERS)
    }
    counter = itertools.count()
    events = draw(
        st.lists(
            st.builds(
                lambda shopper, audience, member, minute, prefix, spelling: Event(
                    shopper, audience, member, minute, f"{prefix}{next(counter)}", spelling
                ),
                st.integers(0, SUBSCRIBERS - 1),
                st.sampled_from(AUDIENCES),
                st.booleans(),
                st.integers(0, 3),
                st.sampled_from(ID_PREFIXES),
                st.sampled_from(SPELLINGS),
            ),
            max_size=8,
        )
    )
    snapshots = draw(
        st.lists(
            st.builds(
                Snapshot,
                st.sampled_from(AUDIENCES),
                st.integers(0, 3),
                st.lists(
                    st.tuples(st.integers(0, SUBSCRIBERS - 1), st.sampled_from(SPELLINGS)),
                    unique_by=lambda member: member[0],
                    max_size=SUBSCRIBERS,
                ).map(tuple),
            ),
            unique_by=lambda snapshot: (snapshot.audience, snapshot.minute),
            min_size=1,
            max_size=3,
        )
    )
    duplicates = draw(st.lists(st.sampled_from(events), max_size=2)) if events else []
    delivered: list[Event | Snapshot] = draw(st.permutations([*events, *duplicates, *snapshots]))
    runs: list[Run] = []
    batch: list[Event] = []
    for item in delivered:
        if isinstance(item, Snapshot):
            runs += [batch] if batch else []
            runs.append(item)
            batch = []
            continue
        batch.append(item)
        if draw(st.booleans()):  # cut the events into sync runs anywhere
            runs.append(batch)
            batch = []
    runs += [batch] if batch else []
    arrival = draw(st.integers(0, len(runs))) if late else None
    return History(initial, arrival, events, snapshots, runs)


def _seed(shopper: int, audiences: tuple[str, ...]) -> dict[str, Any]:
    return {
        "phone_number": phone(shopper),
        "email": email(shopper),
        "properties": {"Segment Audiences": list(audiences)},
    }


def _play(history: History) -> dict[str, Any]:
    async def scenario() -> dict[str, Any]:
        await WORLD.reset()
        await WORLD.seed(*(_seed(shopper, lists) for shopper, lists in history.initial.items()))
        with tempfile.TemporaryDirectory(dir=SCRATCH) as scratch:
            state_path = Path(scratch) / "state.sqlite"
            for number, run in enumerate(history.runs):
                if history.late == number:
                    await WORLD.seed(_seed(SUBSCRIBERS - 1, ()))
                if isinstance(run, Snapshot):
                    snapshot = read_snapshot(io.StringIO(run.csv()), audiences=[run.audience])
                    _, report = await reconcile(
                        WORLD,
                        state_path,
                        snapshot,
                        run.as_of,
                        max_removal_share=1.0,
                        allow_empty=True,
                    )
                else:
                    report = await WORLD.sync(state_path, [event.body() for event in run])
                assert report.pending == 0, report
            if history.late == len(history.runs):  # arrives after the last run: one more drain
                await WORLD.seed(_seed(SUBSCRIBERS - 1, ()))
                await WORLD.sync(state_path, [])
        return await WORLD.state()

    return anyio.run(scenario)


@CONVERGENCE
@given(histories())
def test_events_and_snapshots_converge_to_the_newest_version_in_any_order_and_runs(
    history: History,
) -> None:
    state = _play(history)
    shopper_of = {str(s["id"]): int(str(s["phone_number"])[-4:]) for s in state["subscribers"]}
    lists = {shopper_of[str(s["id"])]: audiences_of(s) for s in state["subscribers"]}
    expected = history.expected()
    assert sorted(lists) == list(range(SUBSCRIBERS))
    for (shopper, audience), member in expected.items():
        assert (audience in lists[shopper]) is member, (shopper, audience, lists[shopper])
    # events mirror changes: per pair they alternate from the starting membership to the end
    posted: dict[tuple[int, str], list[str]] = defaultdict(list)
    for event in state["events"]:
        pair = (shopper_of[event["subscriber_id"]], event["properties"]["Segment Audience Key"])
        posted[pair].append(event["type"])
    for (shopper, audience), member in expected.items():
        held = audience in history.initial.get(shopper, ())
        for kind in posted[shopper, audience]:
            assert kind == (EXITED if held else ENTERED), (shopper, audience, posted)
            held = not held
        assert held is member, (shopper, audience, posted)
