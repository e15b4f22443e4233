"""Fixtures for the Postscript emulator's tests: an app and an authenticated in-process client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.model import store as store_module
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.subscriber import Subscriber
from postscript_audience_lab.emulator.postscript.web.app import create_app

SECRET = "sk_test_pslab"
# How long a forced pause inside one of the store's critical sections lasts: long enough
# that every concurrent writer gets there before any leaves, short enough that fifty
# writers taking turns (as the store's lock makes them) stay well under a second.
PAUSE_S = 0.01


def answered_by_stand_in(request: httpx.Request) -> httpx.Response:
    """What a webhook delivery gets in tests that do not run a receiver: a 200, no network."""
    return httpx.Response(200)


def stand_in_receiver() -> httpx.AsyncBaseTransport:
    return httpx.MockTransport(answered_by_stand_in)


@pytest.fixture
def emulator_app() -> Starlette:
    """An emulator with the rate limit off, so tests are not paced by it; its webhook
    deliveries reach a stand-in receiver, never the network."""
    return create_app(EmulatorConfig(rate_limit_rps=0, webhook_transport=stand_in_receiver))


@pytest.fixture
async def api(emulator_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends the emulator's key on every request."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator_app),
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as client:
        yield client


async def seed(client: httpx.AsyncClient, *subscribers: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/_emulator/subscribers", json={"subscribers": list(subscribers)})
    assert response.status_code == 200, response.text
    created: list[dict[str, Any]] = response.json()["subscribers"]
    return created


class _SlowToReadProperties:
    """A stored subscriber whose `properties` take PAUSE_S to read; everything else passes through.

    `Store.patch` reads the properties, merges the patch into them and writes the
    merge back. Pausing right after the read means that, were the store's lock
    gone, every concurrent PATCH would read the same old properties before any
    wrote its merge back, and all but the last write would be lost.
    """

    __slots__ = ("_subscriber",)
    _subscriber: Subscriber

    def __init__(self, subscriber: Subscriber) -> None:
        object.__setattr__(self, "_subscriber", subscriber)

    @property
    def properties(self) -> dict[str, Any]:
        read = self._subscriber.properties
        time.sleep(PAUSE_S)
        return read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._subscriber, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._subscriber, name, value)


@pytest.fixture
def slow_property_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen `Store.patch`'s read-merge-write window (see `_SlowToReadProperties`)."""
    real_get = Store.get

    def get(self: Store, subscriber_id: str) -> Any:
        return _SlowToReadProperties(real_get(self, subscriber_id))

    monkeypatch.setattr(Store, "get", get)


@pytest.fixture
def slow_subscriber_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen `Store.create`'s check-then-index window by pausing as each Subscriber is built.

    `Store.create` checks that the phone number is free and reads the next ps_id,
    then builds the Subscriber, then indexes it. Were the store's lock gone,
    concurrent creates would all pass the check and take the same ps_id.
    """

    def slow_subscriber(*args: Any, **kwargs: Any) -> Subscriber:
        time.sleep(PAUSE_S)
        return Subscriber(*args, **kwargs)

    monkeypatch.setattr(store_module, "Subscriber", slow_subscriber)


Request = tuple[str, str, Any]  # method, path, JSON body (None for no body)


def send_from_threads(app: Starlette, requests: Sequence[Request]) -> list[httpx.Response]:
    """Send each request to `app` from a thread of its own, on an event loop of its own.

    An in-process client runs the app on one event loop, so its requests never
    reach the store at the same time; these do. The threads start together and
    the call fails, rather than hangs, when one of them does not finish in time.
    """
    start = threading.Barrier(len(requests), timeout=30)
    responses: list[httpx.Response | None] = [None] * len(requests)
    errors: list[BaseException] = []

    async def send(method: str, path: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://emulator",
            headers={"Authorization": f"Bearer {SECRET}"},
        ) as client:
            return await client.request(method, path, json=body)

    def run(index: int, request: Request) -> None:
        try:
            start.wait()
            responses[index] = asyncio.run(send(*request))
        except BaseException as error:  # reported below, in the test's own thread
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(index, request), daemon=True)
        for index, request in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request did not finish in 60 s"
    assert errors == []
    answered = [response for response in responses if response is not None]
    assert len(answered) == len(requests)
    return answered
