"""The service's drain as an operator sees it: a stop that waits for the calls in flight, a
change being written counted once, parked changes retried at the interval /status shows."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.service.app import Service
from postscript_audience_lab.sync.service.intake import Credentials
from tests.sync.test_engine import PHONE, event
from tests.sync.test_service import BASIC, OTHER_PHONE, WRITE_KEY, serving
from tests.sync.world import Tap, World

pytestmark = pytest.mark.anyio


class HeldEvents(Tap):
    """The world's transport, with Postscript holding each event's answer (after storing the
    event) until `released` is set; `in_flight` is set when the first one is held."""

    def __init__(self, world: World) -> None:
        super().__init__(world.transport, after=self._hold)
        self.in_flight, self.released = anyio.Event(), anyio.Event()

    async def _hold(self, request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path == "/api/v2/events":
            self.in_flight.set()
            await self.released.wait()


async def test_a_stop_lets_the_event_in_flight_be_answered_so_a_restart_repeats_nothing(
    world: World, state_path: Path
) -> None:
    """SIGTERM arrives while Postscript holds the answer to an event it has stored: the stop
    waits for that answer and journals it, so the next drain does not post the event again."""
    await world.seed({"phone_number": PHONE})
    held = HeldEvents(world)
    settings = world.settings(state_path, retry_forever=True)
    with Engine(settings, held) as engine:
        service = Service(engine, Credentials(write_key=WRITE_KEY), gather_s=0)
        app = httpx.ASGITransport(app=service.app)
        stopping = anyio.Event()

        async def run_until_stopped() -> None:
            async with service.app.router.lifespan_context(service.app):
                await stopping.wait()  # what follows is the stop (uvicorn's lifespan shutdown)

        async with (
            httpx.AsyncClient(transport=app, base_url="http://pslab") as client,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(run_until_stopped)
            stored = await client.post("/", content=json.dumps(event()), headers=BASIC)
            with anyio.fail_after(10):
                await held.in_flight.wait()
            stopping.set()
            await anyio.sleep(0.2)
            held.released.set()
    async with serving(world, state_path) as served:  # the restart
        after_restart = await served.settled()
    posted = (await world.state())["events"]

    assert stored.status_code == 200
    assert after_restart["since_start"]["resumed"] == 0, after_restart
    assert len(posted) == 1, posted


async def test_a_change_being_written_is_pending_once_not_twice(
    world: World, state_path: Path
) -> None:
    """While Postscript holds the answer to a change's event, /status counts that change once:
    its row is still pending and its write journaled, and the two are one change."""
    await world.seed({"phone_number": PHONE})
    held = HeldEvents(world)
    async with serving(world, state_path, transport=held) as served:
        await served.post("/", event())
        with anyio.fail_after(10):
            await held.in_flight.wait()
        during = await served.status()
        held.released.set()
        after = await served.settled()

    assert (during["pending"], during["writes_in_progress"]) == (1, 1), during
    assert (after["pending"], after["writes_in_progress"]) == (0, 0)


async def test_parked_changes_are_looked_up_again_at_the_interval_status_shows(
    world: World, state_path: Path
) -> None:
    async with serving(world, state_path, parked_retry_s=0.5) as served:
        await served.post("/", event(phone=OTHER_PHONE))  # nobody has this phone yet
        parked = await served.status_when(lambda status: status["parked"] == 1)
        await world.seed({"phone_number": OTHER_PHONE})
        applied = await served.status_when(lambda status: status["since_start"]["applied"] == 1)

    assert parked["parked_retry_s"] == 0.5
    assert 0 <= parked["next_parked_retry_in_s"] <= 0.5
    assert (applied["parked"], applied["ledger"]["applied"]) == (0, 1)
