"""The engine against the in-process emulator: parking, crashes, identity, dry runs, economy."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.sync.client import PostscriptClient
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import (
    ApiError,
    AuthenticationError,
    NotFoundError,
    StateMismatchError,
    UnreachableError,
)
from postscript_audience_lab.sync.ledger import Outcome
from postscript_audience_lab.sync.parse import Rejection
from postscript_audience_lab.sync.plan import ENTERED, EXITED, Plan
from tests.sync.world import SECRET, Crash, Tap, World, audiences_of, by_identity, crash_on

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
PHONE, EMAIL = "+15555550100", "shopper@example.com"
_ids = itertools.count()


def event(
    *,
    phone: str | None = PHONE,
    email: str | None = None,
    key: str = "vip",
    member: bool = True,
    minute: int = 0,
    message_id: str | None = None,
) -> dict[str, Any]:
    traits: dict[str, Any] = {key: member}
    if phone:
        traits["phone"] = phone
    if email:
        traits["email"] = email
    return {
        "type": "identify",
        "messageId": message_id or f"msg-{next(_ids)}",
        "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
        "traits": traits,
        "context": {"personas": {"computation_class": "audience", "computation_key": key}},
    }


async def subscriber(world: World, identity: str) -> dict[str, Any]:
    return by_identity(await world.state())[identity]


async def event_types(world: World) -> list[str]:
    return [posted["type"] for posted in (await world.state())["events"]]


async def test_an_unknown_subscriber_is_parked_then_applied_once_seeded(
    world: World, state_path: Path
) -> None:
    first = await world.sync(state_path, [event(member=True)])
    assert (first.parked, first.parked_identities, first.pending, first.applied) == (1, 1, 0, 0)

    still = await world.sync(state_path, [])
    assert (still.unparked, still.parked) == (1, 1)

    await world.seed({"phone_number": PHONE})
    later = await world.sync(state_path, [])
    assert (later.unparked, later.parked, later.applied, later.events_posted) == (1, 0, 1, 1)
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]


async def test_a_crash_between_patch_and_event_post_loses_no_event_on_rerun(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    crashing = Tap(world.transport, before=crash_on("POST", "/api/v2/events"))
    with pytest.raises(Crash):
        await world.sync(state_path, [event(member=True)], transport=crashing)
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]
    assert await event_types(world) == []

    rerun = await world.sync(state_path, [])
    assert (rerun.resumed, rerun.events_posted, rerun.pending) == (1, 1, 0)
    assert await event_types(world) == [ENTERED]
    # the PATCH was confirmed, so it is not redone (`me` checks the state's shop)
    assert rerun.api_calls == Counter({"me": 1, "events.create": 1})


async def test_a_crash_after_postscript_took_the_event_repeats_it_at_most_once(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    crashing = Tap(world.transport, after=crash_on("POST", "/api/v2/events"))
    with pytest.raises(Crash):
        await world.sync(state_path, [event(member=True)], transport=crashing)
    await world.sync(state_path, [])
    await world.sync(state_path, [])
    assert await event_types(world) == [ENTERED, ENTERED]


async def test_a_crash_before_the_patch_is_resumed_from_a_fresh_read(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE, "properties": {"Segment Audiences": ["legacy"]}})
    crashing = Tap(world.transport, before=crash_on("PATCH", "/api/v2/subscribers"))
    with pytest.raises(Crash):
        await world.sync(state_path, [event(member=True)], transport=crashing)
    rerun = await world.sync(state_path, [])
    assert rerun.resumed == 1
    assert audiences_of(await subscriber(world, PHONE)) == ["legacy", "vip"]
    assert await event_types(world) == [ENTERED]


async def test_a_newer_event_after_a_crash_is_applied_after_the_journaled_one(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    crashing = Tap(world.transport, before=crash_on("POST", "/api/v2/events"))
    with pytest.raises(Crash):
        await world.sync(state_path, [event(member=True, minute=1)], transport=crashing)
    await world.sync(state_path, [event(member=False, minute=2)])
    assert audiences_of(await subscriber(world, PHONE)) == []
    assert await event_types(world) == [ENTERED, EXITED]


async def test_a_stale_event_through_another_identity_changes_nothing_in_a_later_run(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE, "email": EMAIL})
    await world.sync(state_path, [event(phone=PHONE, email=EMAIL, member=True, minute=5)])
    late = await world.sync(state_path, [event(phone=None, email=EMAIL, member=False, minute=3)])
    assert late.stale == 1
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]
    assert await event_types(world) == [ENTERED]


async def test_changes_someone_else_made_to_the_list_between_runs_are_kept(
    world: World, state_path: Path
) -> None:
    (seeded,) = await world.seed({"phone_number": PHONE})
    await world.sync(state_path, [event(key="vip", member=True, minute=1)])
    async with httpx.AsyncClient(
        transport=world.transport,
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as api:
        response = await api.patch(
            f"/api/v2/subscribers/{seeded['id']}",
            json={"properties": {"Segment Audiences": ["vip", "by_hand"]}},
        )
        response.raise_for_status()
    await world.sync(state_path, [event(key="vip", member=False, minute=2)])
    assert audiences_of(await subscriber(world, PHONE)) == ["by_hand"]


async def test_all_changes_of_one_subscriber_go_in_one_patch(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE, "email": EMAIL})
    report = await world.sync(
        state_path,
        [
            event(phone=PHONE, email=EMAIL, key="a", member=True),
            event(phone=PHONE, key="b", member=True),
            event(phone=None, email=EMAIL, key="c", member=True),
        ],
    )
    assert report.api_calls["subscribers.patch"] == 1
    assert report.subscribers_patched == 1
    assert sorted(audiences_of(await subscriber(world, PHONE))) == ["a", "b", "c"]


async def test_the_phone_is_looked_up_before_the_email(world: World, state_path: Path) -> None:
    await world.seed({"phone_number": PHONE}, {"email": EMAIL})
    await world.sync(state_path, [event(phone=PHONE, email=EMAIL)])
    state = by_identity(await world.state())
    assert audiences_of(state[PHONE]) == ["vip"]
    assert audiences_of(state[EMAIL]) == []


async def test_a_phone_that_matches_nobody_falls_back_to_the_email(
    world: World, state_path: Path
) -> None:
    await world.seed({"email": EMAIL})
    report = await world.sync(state_path, [event(phone=PHONE, email=EMAIL)])
    assert (report.applied, report.parked) == (1, 0)
    assert audiences_of(await subscriber(world, EMAIL)) == ["vip"]


async def test_an_email_shared_by_several_subscribers_goes_to_the_newest_and_is_reported(
    world: World, state_path: Path
) -> None:
    older, newer = await world.seed(
        {"phone_number": "+15555550101", "email": EMAIL, "created_at": "2024-01-01T00:00:00Z"},
        {"phone_number": "+15555550102", "email": EMAIL, "created_at": "2024-02-01T00:00:00Z"},
    )
    report = await world.sync(state_path, [event(phone=None, email=EMAIL)])
    assert report.ambiguous == 1
    subscribers = {s["id"]: s for s in (await world.state())["subscribers"]}
    assert audiences_of(subscribers[newer["id"]]) == ["vip"]
    assert audiences_of(subscribers[older["id"]]) == []


async def test_text_no_store_accepts_is_rejected_and_the_rest_of_the_input_still_applies(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    bad_key = event(key="vip\ud800")  # a lone surrogate, as json.loads makes from "\\ud800"
    bad_type = {"type": "page\udc00"}
    with Engine(world.settings(state_path), world.transport) as engine:
        engine.ingest([bad_key, bad_type, "\udcff\udcfe", event(key="ok")])
        report = await engine.drain()
        reasons = [rejection["reason"] for rejection in engine.rejections()]
    assert (report.received, report.rejected, report.applied, report.pending) == (4, 3, 1, 0)
    assert len(reasons) == 3
    assert audiences_of(await subscriber(world, PHONE)) == ["ok"]


async def test_a_refused_patch_settles_every_change_it_carried_and_is_reported(
    world: World, state_path: Path
) -> None:
    full = {f"custom_{index}": index for index in range(50)}  # a 51st property is a 400
    await world.seed({"phone_number": PHONE, "email": EMAIL, "properties": full})
    with Engine(world.settings(state_path), world.transport) as engine:
        engine.ingest(
            [
                event(phone=PHONE, email=EMAIL, key="b", member=True, minute=1),
                event(phone=PHONE, email=EMAIL, key="a", member=False, minute=3),
                event(phone=PHONE, key="a", member=True, minute=2),  # older, another identity
            ]
        )
        first = await engine.drain()
        refusals = [rejection["reason"] for rejection in engine.rejections()]
    assert (first.refused, first.pending, first.api_calls["subscribers.patch"]) == (2, 0, 1)
    assert len(refusals) == 2
    assert all("at most 50 custom properties" in reason for reason in refusals)  # the API's words
    with Engine(world.settings(state_path), world.transport) as engine:
        later = await engine.drain()
        reasons = [rejection["reason"] for rejection in engine.rejections()]
    assert (later.pending, later.api_calls["subscribers.patch"]) == (0, 0)
    assert reasons == []
    assert "Segment Audiences" not in (await subscriber(world, PHONE))["properties"]


async def test_a_patch_refused_while_resuming_a_crashed_write_does_not_stick_the_state_file(
    world: World, state_path: Path
) -> None:
    full = {f"custom_{index}": index for index in range(50)}  # a 51st property is a 400
    await world.seed({"phone_number": PHONE, "properties": full})
    crashing = Tap(world.transport, before=crash_on("PATCH", "/api/v2/subscribers"))
    with pytest.raises(Crash):
        await world.sync(state_path, [event(member=True)], transport=crashing)
    rerun = await world.sync(state_path, [])
    assert (rerun.resumed, rerun.refused, rerun.pending) == (1, 1, 0)
    assert await event_types(world) == []
    after = await world.sync(state_path, [])
    assert sum(after.api_calls.values()) == 0


async def test_no_events_updates_the_list_and_posts_nothing(world: World, state_path: Path) -> None:
    await world.seed({"phone_number": PHONE})
    report = await world.sync(state_path, [event()], post_events=False)
    assert (report.changed, report.events_posted) == (1, 0)
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]
    assert await event_types(world) == []


async def test_a_dry_run_writes_nothing_anywhere_and_shows_its_plan(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    plans: list[Plan] = []
    settings = world.settings(state_path, dry_run=True)
    with Engine(settings, world.transport, on_plan=plans.append) as e:
        e.ingest([event()])
        report = await e.drain()
    assert (report.dry_run, report.subscribers_patched, report.events_posted) == (True, 1, 1)
    assert [plan.audiences for plan in plans] == [["vip"]]
    assert report.api_calls["subscribers.patch"] == report.api_calls["events.create"] == 0
    assert audiences_of(await subscriber(world, PHONE)) == []
    assert not os.path.exists(state_path)  # noqa: ASYNC240 -- a one-off check in a test

    real = await world.sync(state_path, [event(message_id="m-1")])
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]
    with Engine(settings, world.transport, on_plan=plans.append) as e:  # over an existing state
        e.ingest([event(member=False, minute=1), event(message_id="m-1")])
        again = await e.drain()
    assert (again.duplicates, again.subscribers_patched, again.events_posted) == (1, 1, 1)
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]
    assert await event_types(world) == [ENTERED]
    assert real.events_posted == 1


async def test_a_dry_run_after_a_crash_drains_on_paper_and_leaves_the_resume_to_a_real_run(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    crashing = Tap(world.transport, before=crash_on("POST", "/api/v2/events"))
    with pytest.raises(Crash):
        await world.sync(state_path, [event(member=True)], transport=crashing)
    dry = await world.sync(state_path, [], dry_run=True)
    assert (dry.resumed, dry.pending) == (1, 0)
    assert await event_types(world) == []
    real = await world.sync(state_path, [])
    assert (real.resumed, real.events_posted, real.pending) == (1, 1, 0)
    assert await event_types(world) == [ENTERED]


async def test_a_refused_key_stops_the_run_and_keeps_the_changes(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    with pytest.raises(AuthenticationError, match="secret key was refused"):
        await world.sync(state_path, [event()], secret_key="sk_wrong")
    report = await world.sync(state_path, [])
    assert report.applied == 1
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]


async def test_an_unreachable_api_stops_the_run_with_a_clear_error(state_path: Path) -> None:
    world = World()
    with pytest.raises(UnreachableError, match="could not reach"):
        await world.sync(
            state_path,
            [event()],
            transport=httpx.AsyncHTTPTransport(),
            base_url="http://127.0.0.1:9",
        )


async def test_a_missing_subscriber_is_a_not_found_error_with_the_api_message(
    world: World,
) -> None:
    async with PostscriptClient("http://emulator", SECRET, transport=world.transport) as client:
        with pytest.raises(NotFoundError) as raised:
            await client.get_subscriber("s_missing")
    assert raised.value.status == 404
    assert raised.value.message


async def test_a_success_that_is_not_json_is_an_api_error_naming_what_came_back() -> None:
    page = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>login</html>"))
    async with PostscriptClient("http://emulator", SECRET, transport=page) as client:
        with pytest.raises(ApiError, match="me: HTTP 200: not JSON: '<html>login</html>'"):
            await client.me()


async def test_every_retried_attempt_is_counted(world: World, state_path: Path) -> None:
    await world.seed({"phone_number": PHONE})
    await world.faults(error_rate=0.5, error_statuses=[503], seed=3)
    report = await world.sync(state_path, [event()])
    journal = (await world.admin("GET", "requests"))["requests"]
    assert report.pending == 0
    assert sum(report.api_calls.values()) == len(journal) > report.lower_bound
    assert audiences_of(await subscriber(world, PHONE)) == ["vip"]


async def test_writes_to_one_subscriber_never_overlap_while_subscribers_run_in_parallel(
    world: World, state_path: Path
) -> None:
    phones = [f"+1555555{index:04d}" for index in range(12)]
    created = await world.seed(*({"phone_number": phone} for phone in phones))
    owners = {s["id"] for s in created}
    in_flight: Counter[str] = Counter()
    worst: Counter[str] = Counter()

    def owner(request: httpx.Request) -> str | None:
        if request.method == "PATCH":
            return request.url.path.rsplit("/", 1)[-1]
        if request.url.path == "/api/v2/events":
            return str(json.loads(request.content)["subscriber_id"])
        return None

    async def before(request: httpx.Request) -> None:
        who = owner(request)
        if who is not None:
            in_flight[who] += 1
            in_flight["*"] += 1
            worst[who] = max(worst[who], in_flight[who])
            worst["*"] = max(worst["*"], in_flight["*"])
            await anyio.sleep(0.01)

    async def after(request: httpx.Request) -> None:
        who = owner(request)
        if who is not None:
            in_flight[who] -= 1
            in_flight["*"] -= 1

    events = [event(phone=p, key=k) for p in phones for k in ("a", "b")]
    await world.sync(state_path, events, transport=Tap(world.transport, before, after))
    assert all(worst[who] == 1 for who in owners)
    assert worst["*"] > 1


class OtherShop(httpx.AsyncBaseTransport):
    """The emulator, but `/api/v2/me` says the key belongs to another shop."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/me":
            body = {"resource_id": "shop_other", "resource_name": "x", "resource_type": "shop"}
            return httpx.Response(200, json=body)
        return await self.inner.handle_async_request(request)


async def test_a_state_file_filled_for_one_shop_is_refused_for_another(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    await world.sync(state_path, [event(minute=1)])
    with pytest.raises(StateMismatchError, match="belongs to shop shop_pslab0emulator"):
        await world.sync(state_path, [event(minute=2)], transport=OtherShop(world.transport))


async def test_a_run_with_nothing_to_do_makes_no_call(world: World, state_path: Path) -> None:
    report = await world.sync(state_path, [])
    assert sum(report.api_calls.values()) == 0


async def test_lookups_follow_every_page(state_path: Path) -> None:
    world = World(EmulatorConfig(secret_key=SECRET, rate_limit_rps=0, page_size=2))
    phones = [f"+1555555{index:04d}" for index in range(5)]
    await world.seed(*({"phone_number": phone} for phone in phones))
    report = await world.sync(state_path, [event(phone=phone) for phone in phones])
    assert report.api_calls["subscribers.list"] == 3
    assert (report.applied, report.parked) == (5, 0)


async def test_a_list_changed_after_the_lookup_is_read_again_before_the_patch(
    world: World, state_path: Path
) -> None:
    (seeded,) = await world.seed({"phone_number": PHONE})
    edited: list[bool] = []

    async def edit_after_lookup(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path == "/api/v2/subscribers" and not edited:
            edited.append(True)
            edit = httpx.Request(
                "PATCH",
                f"http://emulator/api/v2/subscribers/{seeded['id']}",
                headers={"Authorization": f"Bearer {SECRET}"},
                json={"properties": {"Segment Audiences": ["by_hand"]}},
            )
            response = await world.transport.handle_async_request(edit)
            assert response.status_code == 200

    tap = Tap(world.transport, after=edit_after_lookup)
    report = await world.sync(state_path, [event()], transport=tap, max_read_age_s=0)
    assert audiences_of(await subscriber(world, PHONE)) == ["by_hand", "vip"]
    assert report.api_calls["subscribers.list"] == 2  # the lookup, then the re-read


async def test_ingest_body_says_what_became_of_each_event_in_order(
    world: World, state_path: Path
) -> None:
    newer, older = event(minute=5, message_id="m-new"), event(minute=1, message_id="m-old")

    with Engine(world.settings(state_path), world.transport) as engine:
        stored = engine.ingest_body([newer, newer, older, {"type": "page"}])
        single = engine.ingest_body(event(key="winback"))

    assert [outcome for _, outcome in stored] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.STALE,
        Outcome.REJECTED,
    ]
    assert isinstance(stored[3][0], Rejection)
    assert [outcome for _, outcome in single] == [Outcome.ACCEPTED]
    assert (engine.report.received, engine.report.accepted) == (5, 2)


async def test_a_drain_told_not_to_unpark_leaves_parked_changes_parked(
    world: World, state_path: Path
) -> None:
    with Engine(world.settings(state_path), world.transport) as engine:
        engine.ingest([event()])
        await engine.drain()
        await world.seed({"phone_number": PHONE})
        kept = await engine.drain(unpark=False)
        assert (kept.parked, kept.applied) == (1, 0)
        retried = await engine.drain()
        assert (retried.parked, retried.applied) == (0, 1)


async def test_a_write_postscript_can_never_take_is_refused_and_the_drain_moves_on(
    world: World, state_path: Path
) -> None:
    others = [f"+1555555{n:04d}" for n in range(1, 20)]
    await world.seed({"phone_number": PHONE}, *({"phone_number": phone} for phone in others))
    # Its PATCH body is over the emulator's 1 MiB limit (as over Postscript's): a 413, every time.
    huge = event(key="k" * (1 << 20), message_id="m-huge")
    good = [event(phone=phone, message_id=f"m-{phone}") for phone in others]

    first = await world.sync(state_path, [huge, *good])

    assert (first.refused, first.applied, first.pending) == (1, 19, 0)
    assert audiences_of(await subscriber(world, PHONE)) == []
    for phone in others:
        assert audiences_of(await subscriber(world, phone)) == ["vip"]
    again = await world.sync(state_path, [])  # set aside: not tried again
    assert (again.refused, again.pending, again.api_calls.get("subscribers.patch", 0)) == (0, 0, 0)


async def test_a_lookup_of_long_emails_is_split_to_keep_its_url_short(
    world: World, state_path: Path
) -> None:
    emails = [f"{n:03d}{'x' * 230}@example.com" for n in range(50)]  # 245 characters each
    await world.seed(*({"email": email} for email in emails))
    urls: list[int] = []

    async def measure(request: httpx.Request) -> None:
        if request.method == "GET" and "email__in" in str(request.url):
            urls.append(len(str(request.url)))

    report = await world.sync(
        state_path,
        [event(phone=None, email=email, message_id=f"m-{n}") for n, email in enumerate(emails)],
        transport=Tap(world.transport, before=measure),
    )

    assert (report.applied, report.parked) == (50, 0)
    assert len(urls) >= 3  # one lookup of 50 would have been a 13 KB URL
    assert max(urls) < 8 * 1024
