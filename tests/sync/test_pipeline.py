"""docs/design/economy.md#pace: lookups and writes flow together, one write per subscriber at a
time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.sync.errors import NotFoundError
from postscript_audience_lab.sync.pipeline import MIN_LOOKUP_BATCH, lookup_batch_for
from tests.sync.test_engine import event
from tests.sync.world import SECRET, World

pytestmark = pytest.mark.anyio

PHONES = [f"+1555444{number:04d}" for number in range(30)]


class WritesInFlight(httpx.AsyncBaseTransport):
    """Counts, per subscriber, the writes (PATCH or event) under way at once; slows each."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.order: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.order.append(f"{request.method} {request.url.path}")
        who = self._subscriber(request)
        if who is None:
            return await self.inner.handle_async_request(request)
        self.now[who] += 1
        self.most[who] = max(self.most[who], self.now[who])
        try:
            await anyio.sleep(0.002)  # long enough for other tasks to run meanwhile
            return await self.inner.handle_async_request(request)
        finally:
            self.now[who] -= 1

    @staticmethod
    def _subscriber(request: httpx.Request) -> str | None:
        if request.method == "PATCH":
            return request.url.path.rsplit("/", 1)[-1]
        if request.method == "POST" and request.url.path == "/api/v2/events":
            return str(httpx.Response(200, content=request.content).json()["subscriber_id"])
        return None


@pytest.mark.parametrize("rate_limit", [0.0, 2000.0])
async def test_writes_start_before_the_last_lookup_and_never_overlap_for_one_subscriber(
    world: World, state_path: Path, rate_limit: float
) -> None:
    await world.seed(*({"phone_number": phone} for phone in PHONES))
    events = [event(phone=phone, key=key) for phone in PHONES for key in ("vip", "winback")]
    tap = WritesInFlight(world.transport)
    report = await world.sync(
        state_path, events, transport=tap, rate_limit=rate_limit, lookup_batch=10, workers=4
    )
    assert (report.pending, report.applied, report.subscribers_patched) == (0, 60, 30)
    lookups = [number for number, call in enumerate(tap.order) if call.endswith("/subscribers")]
    first_patch = next(number for number, call in enumerate(tap.order) if call.startswith("PATCH"))
    assert len(lookups) == 3
    assert first_patch < lookups[-1]  # no barrier: writing starts while lookups go on
    assert max(tap.most.values()) == 1
    assert set(report.read_to_patch_s) == {"p50", "p99", "max"}
    assert 0 <= report.read_to_patch_s["p50"] <= report.read_to_patch_s["max"]


async def test_a_subscriber_found_by_email_first_waits_for_its_phone_lookup_one_patch(
    world: World, state_path: Path
) -> None:
    emails = [f"shopper{number}@example.com" for number in range(11)]  # a full email lookup
    await world.seed(
        *(
            {"phone_number": phone, "email": email}
            for phone, email in zip(PHONES[:11], emails, strict=True)
        ),
        *({"phone_number": phone} for phone in PHONES[11:25]),
    )
    events = [
        *(event(phone=None, email=email, key="by_email") for email in emails),
        *(event(phone=phone, key="vip") for phone in PHONES[11:25]),
        event(phone=PHONES[0], key="by_phone"),
    ]
    report = await world.sync(state_path, events, lookup_batch=10, rate_limit=0)
    assert (report.pending, report.applied) == (0, 26)
    assert report.api_calls["subscribers.patch"] == 25  # one per subscriber, not 26


def test_a_lookup_is_as_large_as_fresh_reads_allow_at_the_rate() -> None:
    assert lookup_batch_for(0, 50) == 50  # unpaced: the configured batch
    assert lookup_batch_for(15, 50) == 18  # 1.2 s of PATCHes at 15/s
    assert lookup_batch_for(1000, 50) == 50
    assert lookup_batch_for(2, 50) == MIN_LOOKUP_BATCH
    assert lookup_batch_for(2, 5) == 5


@pytest.mark.slow
async def test_a_run_converges_when_the_api_allows_2_per_second_and_the_engine_paces_15(
    state_path: Path,
) -> None:
    slow_api = World(EmulatorConfig(secret_key=SECRET, rate_limit_rps=2))
    await slow_api.seed(*({"phone_number": phone} for phone in PHONES[:8]))
    events = [event(phone=phone) for phone in PHONES[:8]]
    report = await slow_api.sync(state_path, events, rate_limit=15)
    assert (report.pending, report.applied) == (0, 8)
    assert report.rate_limited > 0  # it met the API's limit, slowed down, and finished
    state = await slow_api.state()
    assert len(state["events"]) == 8


class SecondLookupRefused(httpx.AsyncBaseTransport):
    """Answers the second lookup 404 (after a pause, while writes are under way)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lookups = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/v2/subscribers":
            self.lookups += 1
            if self.lookups == 2:
                await anyio.sleep(0.01)
                return httpx.Response(404, json={"error": "gone"})
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            await anyio.sleep(0.005)  # stored, not yet answered, when the lookup fails
        return response


async def test_a_failed_lookup_lets_the_writes_under_way_finish_so_no_event_repeats(
    world: World, state_path: Path
) -> None:
    await world.seed(*({"phone_number": phone} for phone in PHONES))
    events = [event(phone=phone, key=key) for phone in PHONES for key in ("vip", "winback")]
    with pytest.raises(NotFoundError):
        await world.sync(
            state_path, events, transport=SecondLookupRefused(world.transport), lookup_batch=10
        )
    report = await world.sync(state_path, [], lookup_batch=10)
    assert report.pending == 0
    posted = Counter(
        (item["subscriber_id"], item["external_id"]) for item in (await world.state())["events"]
    )
    assert len(posted) == 60
    assert max(posted.values()) == 1
