"""The engine as a service (docs/design/service.md), in process: the app over ASGI, the drain beside
it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.service.app import Service
from postscript_audience_lab.sync.service.drain_loop import DrainState
from postscript_audience_lab.sync.service.intake import Credentials
from postscript_audience_lab.sync.service.metrics import ServiceMetrics
from tests.sync.test_engine import PHONE, event
from tests.sync.world import World, audiences_of, by_identity

pytestmark = pytest.mark.anyio

WRITE_KEY, SECRET = "wk_segment_test", "shared_test"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
OTHER_PHONE = "+15555550111"


@dataclass
class Served:
    service: Service
    client: httpx.AsyncClient
    state_path: Path

    async def post(self, path: str, body: object, headers: dict[str, str] | None = None) -> Any:
        return await self.client.post(path, content=json.dumps(body), headers=headers or BASIC)

    async def status(self) -> dict[str, Any]:
        response = await self.client.get("/status")
        response.raise_for_status()
        return dict(response.json())

    async def settled(self) -> dict[str, Any]:
        """/status once nothing is pending and the drain is not running."""
        return await self.status_when(lambda s: s["pending"] == 0 and s["drain"] == "idle")

    async def status_when(self, holds: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first /status (polled, as an operator would) for which `holds` is true."""
        with anyio.fail_after(10):
            while not holds(status := await self.status()):  # noqa: ASYNC110 -- polls over HTTP
                await anyio.sleep(0.01)
        return status

    def stored_message_ids(self) -> set[str]:
        """What another connection sees committed in the state file."""
        uri = f"{self.state_path.resolve().as_uri()}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            return {row[0] for row in db.execute("SELECT message_id FROM seen")}


@asynccontextmanager
async def serving(
    world: World,
    state_path: Path,
    *,
    credentials: Credentials = Credentials(write_key=WRITE_KEY, shared_secret=SECRET),  # noqa: B008
    transport: httpx.AsyncBaseTransport | None = None,
    drain: bool = True,
    max_body_bytes: int = 1 << 20,
    max_inflight_bytes: int = 4 << 20,
    parked_retry_s: float = 300.0,
    **settings_overrides: Any,
) -> AsyncIterator[Served]:
    metrics = ServiceMetrics()
    settings = world.settings(state_path, retry_forever=True, **settings_overrides)
    with Engine(settings, metrics.meter(transport or world.transport)) as engine:
        service = Service(
            engine,
            credentials,
            metrics=metrics,
            drain=drain,
            max_body_bytes=max_body_bytes,
            max_inflight_bytes=max_inflight_bytes,
            parked_retry_s=parked_retry_s,
            gather_s=0,
        )
        await engine.check_shop()  # as `pslab serve` does before it listens
        app = httpx.ASGITransport(app=service.app)
        async with (
            httpx.AsyncClient(transport=app, base_url="http://pslab") as client,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(service.run)
            yield Served(service, client, state_path)
            tasks.cancel_scope.cancel()


def signed(body: object, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"X-Signature": hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()}


# -- intake ------------------------------------------------------------------------


async def test_a_request_is_answered_only_once_its_events_are_committed(
    world: World, state_path: Path
) -> None:
    async with serving(world, state_path, drain=False) as served:
        response = await served.post("/v1/identify", event(message_id="m-1"))

        assert response.status_code == 200
        assert response.json()["accepted"] == 1
        assert served.stored_message_ids() == {"m-1"}


async def test_a_batch_mixing_good_and_bad_events_is_answered_per_event_and_the_good_apply(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE}, {"phone_number": OTHER_PHONE})
    bad = {**event(message_id="m-bad"), "type": "page"}
    batch = [event(message_id="m-1"), bad, event(phone=OTHER_PHONE, key="winback"), "junk"]

    async with serving(world, state_path) as served:
        response = await served.post("/v1/batch", {"batch": batch})
        await served.settled()

    answer = response.json()
    assert response.status_code == 200
    assert (answer["accepted"], answer["rejected"]) == (2, 2)
    assert [(error["index"], error.get("messageId")) for error in answer["errors"]] == [
        (1, "m-bad"),
        (3, None),
    ]
    assert "type is 'page'" in answer["errors"][0]["reason"]
    subscribers = by_identity(await world.state())
    assert audiences_of(subscribers[PHONE]) == ["vip"]
    assert audiences_of(subscribers[OTHER_PHONE]) == ["winback"]


async def test_brackets_inside_strings_do_not_count_as_nesting(
    world: World, state_path: Path
) -> None:
    events = [event(message_id=f"m-{n}", phone=f"+1555555{n:04d}") for n in range(100)]
    batch = [
        {**one, "traits": {**one["traits"], "nickname": "[VIP"}} if n < 80 else one
        for n, one in enumerate(events)
    ]

    async with serving(world, state_path, drain=False) as served:
        response = await served.post("/v1/batch", {"batch": batch})

    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (100, 0)
    assert served.stored_message_ids() == {f"m-{n}" for n in range(100)}


async def test_a_lone_surrogate_rejects_its_event_only_and_is_never_a_5xx(
    world: World, state_path: Path
) -> None:
    # json.dumps writes a lone surrogate as its escape, as a careless sender's encoder would
    raw_single = json.dumps(event(message_id="\ud800"))
    raw_batch = json.dumps({"batch": [event(message_id="m-good"), event(message_id="m-\udc00")]})

    async with serving(world, state_path, drain=False) as served:
        single = await served.client.post("/v1/identify", content=raw_single, headers=BASIC)
        batch = await served.client.post("/v1/batch", content=raw_batch, headers=BASIC)
        again = await served.client.post("/v1/batch", content=raw_batch, headers=BASIC)

    assert 400 <= single.status_code < 500, single.text
    assert batch.status_code == 200, batch.text
    assert (batch.json()["accepted"], batch.json()["rejected"]) == (1, 1)
    assert batch.json()["errors"][0]["messageId"] == "m-\udc00"  # escaped: the answer encodes
    assert "surrogate" in batch.json()["errors"][0]["reason"]
    assert "messageId" in single.json()["error"]
    assert again.status_code == 200
    assert served.stored_message_ids() == {"m-good"}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no credentials: send the write key as the HTTP Basic user or an X-Signature"),
        (
            {"Authorization": "Basic " + base64.b64encode(b"wk_wrong:").decode()},
            "the write key is not this service's",
        ),
        ({"Authorization": f"Bearer {WRITE_KEY}"}, "Authorization is not HTTP Basic"),
        (signed([event()], secret="not the secret")[1], "X-Signature does not match the body"),
        ({"X-Signature": "0" * 40}, "X-Signature does not match the body"),
        ({"X-Signature": "nope"}, "X-Signature is not a hex HMAC-SHA1"),
    ],
    ids=["none", "wrong write key", "bearer", "wrong secret", "bad signature", "not an hmac"],
)
async def test_wrong_or_missing_credentials_are_a_401_saying_which_and_store_nothing(
    world: World, state_path: Path, headers: dict[str, str], reason: str
) -> None:
    async with serving(world, state_path, drain=False) as served:
        response = await served.client.post("/", content=json.dumps([event()]), headers=headers)
        status = await served.status()

        assert response.status_code == 401
        assert reason in response.json()["error"]
        assert WRITE_KEY not in response.text
        assert SECRET not in response.text
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pslab"'
        assert status["since_start"]["received"] == 0
        assert served.stored_message_ids() == set()


async def test_a_signature_alone_or_a_write_key_alone_is_enough(
    world: World, state_path: Path
) -> None:
    raw, headers = signed([event(message_id="m-signed")])

    async with serving(world, state_path, drain=False) as served:
        by_signature = await served.client.post("/", content=raw, headers=headers)
        by_key = await served.post("/v1/track", {**event(message_id="m-key"), "type": "track"})

        assert (by_signature.status_code, by_key.status_code) == (200, 200)
        assert served.stored_message_ids() == {"m-signed", "m-key"}


async def test_without_credentials_set_up_anyone_may_post(world: World, state_path: Path) -> None:
    async with serving(world, state_path, credentials=Credentials(), drain=False) as served:
        response = await served.post("/", event(), headers={})

        assert response.status_code == 200


async def test_a_body_over_the_limit_is_a_413_whether_declared_or_streamed(
    world: World, state_path: Path
) -> None:
    big = json.dumps([event() for _ in range(40)]).encode()
    assert len(big) > 4096

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the count decides
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    async with serving(world, state_path, drain=False, max_body_bytes=4096) as served:
        declared = await served.client.post("/", content=big, headers=BASIC)
        streamed = await served.client.post("/", content=chunks(), headers=BASIC)

        assert "content-length" not in streamed.request.headers
        assert (declared.status_code, streamed.status_code) == (413, 413)
        assert served.stored_message_ids() == set()


async def test_a_body_that_is_not_json_is_a_400_with_the_reason(
    world: World, state_path: Path
) -> None:
    async with serving(world, state_path, drain=False) as served:
        response = await served.client.post("/", content=b'{"type": NaN}', headers=BASIC)

        assert response.status_code == 400
        assert "holds NaN, which is not a JSON number" in response.json()["error"]
        assert served.stored_message_ids() == set()


async def test_a_stopping_service_answers_503_and_stores_nothing(
    world: World, state_path: Path
) -> None:
    async with serving(world, state_path, drain=False) as served:
        healthy = await served.client.get("/health")
        served.service.stop_accepting()
        response = await served.post("/", event())
        health = await served.client.get("/health")

        assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
        assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
        assert health.status_code == 503
        assert served.stored_message_ids() == set()


# -- the drain ---------------------------------------------------------------------


class Refusing(httpx.AsyncBaseTransport):
    """Passes requests through until `refuse` is set, then answers every one 401."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refuse = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse:
            return httpx.Response(401, json={"error_message": "Unauthorized"})
        return await self.inner.handle_async_request(request)


async def test_a_refused_key_pauses_the_drain_and_intake_goes_on(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    transport = Refusing(world.transport)

    async with serving(world, state_path, transport=transport) as served:
        transport.refuse = True
        first = await served.post("/", event(message_id="m-1"))
        await served.status_when(lambda status: status["drain"] == DrainState.PAUSED)
        later = await served.post("/", event(key="winback", message_id="m-2"))
        status = await served.status()
        metrics = (await served.client.get("/metrics")).text

    assert (first.status_code, later.status_code) == (200, 200)
    assert status["pending"] == 2
    assert "restarted with a good key" in status["paused_because"]
    assert "pslab_drain_paused 1.0" in metrics
    assert audiences_of(by_identity(await world.state())[PHONE]) == []


async def test_a_failing_call_shows_in_status_and_the_drain_tries_again_until_it_succeeds(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})

    async with serving(world, state_path) as served:
        await world.faults(error_rate=1.0, error_statuses=[503])
        await served.post("/", event())
        failing = await served.status_when(lambda status: status["drain"] == "backing off")
        await world.faults()
        recovered = await served.settled()

    assert "HTTP 503" in failing["failing"]["subscribers.list"]
    assert "ServerError" in failing["last_error"]
    assert recovered["failing"] == {}
    assert recovered["since_start"]["applied"] == 1
    assert audiences_of(by_identity(await world.state())[PHONE]) == ["vip"]


async def test_parked_identities_are_not_looked_up_again_on_every_drain(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    unknown = "+15555550199"

    async with serving(world, state_path) as served:
        await served.post("/", event(phone=unknown, message_id="m-parked"))
        await served.settled()
        for minute in range(1, 4):  # three more drains, each for the known subscriber
            await served.post("/", event(member=minute % 2 == 1, minute=minute))
            await served.settled()
        status = await served.status()

    journal = (await world.admin("GET", "requests"))["requests"]
    looked_up_unknown = [
        entry for entry in journal if unknown.lstrip("+") in json.dumps(entry["query"])
    ]
    assert status["parked"] == 1
    assert len(looked_up_unknown) == 1


# -- operating it ------------------------------------------------------------------


async def test_status_shows_the_backlog_its_age_and_the_calls_made(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})

    async with serving(world, state_path, drain=False) as waiting:
        await waiting.post("/", [event(message_id="m-1"), event(message_id="m-1"), {}])
        await anyio.sleep(0.05)
        backlog = await waiting.status()
    async with serving(world, state_path) as served:
        drained = await served.settled()

    assert backlog["drain"] == "off"
    assert (backlog["pending"], backlog["ledger"]["rejected"]) == (1, 1)
    assert backlog["oldest_pending_age_s"] >= 0.05
    assert (backlog["since_start"]["received"], backlog["since_start"]["duplicates"]) == (3, 1)
    assert drained["oldest_pending_age_s"] == 0
    assert (drained["ledger"]["pending"], drained["ledger"]["applied"]) == (0, 1)
    calls = drained["api_calls"]
    assert calls["by_status"]["subscribers.patch"] == {"200": 1}
    assert calls["total"] == sum(v for k, v in calls.items() if k not in ("total", "by_status"))


async def test_status_and_metrics_read_counters_and_scan_no_table(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})
    tracks = [{"type": "track", "messageId": f"t-{n}"} for n in range(5)]

    async with serving(world, state_path, drain=False, keep_rejections=2) as served:
        await served.post("/", [event(message_id="m-1"), event(message_id="m-1"), *tracks])
        statements: list[str] = []
        served.service.engine.ledger.db.set_trace_callback(statements.append)
        status = await served.status()
        (await served.client.get("/metrics")).raise_for_status()
        db = served.service.engine.ledger.db
        db.set_trace_callback(None)
        plans = [
            (sql, step[3])
            for sql in statements
            if sql.lstrip().upper().startswith("SELECT")
            for step in db.execute(f"EXPLAIN QUERY PLAN {sql}")
        ]

    assert any("counters" in sql for sql, _ in plans)  # read on this connection
    # Only the counters' few rows are read whole; anything else by key.
    scans = [(sql, how) for sql, how in plans if "SCAN" in how and how != "SCAN counters"]
    assert scans == []
    ledger = status["ledger"]
    assert (ledger["pending"], ledger["rejected"], ledger["rejections_dropped"]) == (1, 2, 3)
    assert (ledger["keep_rejections"], ledger["rejection_bytes"] > 0) == (2, True)
    on_disk = state_path.stat().st_size  # noqa: ASYNC240 -- a one-off check in a test
    assert ledger["state_file_bytes"] >= on_disk > 0


async def test_metrics_count_intake_events_api_calls_and_applied_changes(
    world: World, state_path: Path
) -> None:
    await world.seed({"phone_number": PHONE})

    async with serving(world, state_path) as served:
        await served.post("/", [event(message_id="m-1"), event(message_id="m-1")])
        await served.settled()
        response = await served.client.get("/metrics")

    lines = set(response.text.splitlines())
    assert response.headers["content-type"].startswith("text/plain")
    assert {
        'pslab_intake_events_total{outcome="accepted"} 1.0',
        'pslab_intake_events_total{outcome="duplicate"} 1.0',
        'pslab_intake_requests_total{route="/",status="200"} 1.0',
        'pslab_api_calls_total{endpoint="me",status="200"} 1.0',
        'pslab_api_calls_total{endpoint="subscribers.patch",status="200"} 1.0',
        "pslab_changes_applied_total 1.0",
        "pslab_pending_changes 0.0",
        "pslab_drain_lag_seconds 0.0",
    } <= lines


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("pslab.example", False),
    ],
)
def test_serving_without_credentials_is_quiet_only_on_loopback(host: str, loopback: bool) -> None:
    from postscript_audience_lab.sync.commands.serving import is_loopback

    assert is_loopback(host) is loopback


async def test_a_signature_that_is_not_an_hmac_is_refused_before_the_body_is_read(
    world: World, state_path: Path
) -> None:
    pulled: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"[", json.dumps(event()).encode(), b"]"):
            pulled.append(chunk)
            yield chunk

    async with serving(world, state_path, drain=False) as served:
        response = await served.client.post("/", content=body(), headers={"X-Signature": "nope"})

        assert response.status_code == 401
        assert pulled == []


async def test_bodies_past_the_in_flight_budget_are_asked_to_come_back(
    world: World, state_path: Path
) -> None:
    """One slow body holds 3,000 of a 4,096-byte budget: a second body that does not fit
    gets a 503 with Retry-After (Segment retries it), and fits again once the first is in."""
    raw = json.dumps([event(message_id=f"m-{n}") for n in range(16)]).encode()
    first = raw[:3000]
    second = json.dumps([event(message_id=f"s-{n}") for n in range(8)]).encode()
    assert len(second) > 4096 - len(first)
    go_on = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield first
        await go_on.wait()
        yield raw[3000:]

    async with serving(
        world, state_path, drain=False, max_body_bytes=4096, max_inflight_bytes=4096
    ) as served:
        async with anyio.create_task_group() as tasks:
            answers: list[httpx.Response] = []

            async def send_slow() -> None:
                answers.append(await served.client.post("/", content=slow(), headers=BASIC))

            tasks.start_soon(send_slow)
            with anyio.fail_after(5):
                while served.service.bodies.held < len(first):  # noqa: ASYNC110 -- in process
                    await anyio.sleep(0.01)
            refused = await served.client.post("/", content=second, headers=BASIC)
            go_on.set()
        again = await served.client.post("/", content=second, headers=BASIC)
        status = await served.status()

    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert [answer.status_code for answer in answers] == [200]
    assert again.status_code == 200
    assert status["intake"]["busy_refusals"] == 1
    assert status["intake"]["body_bytes_reading"] == 0
