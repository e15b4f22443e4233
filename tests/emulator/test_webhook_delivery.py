"""The webhook dispatcher: background sending, bounded retries, the journal, flush and reset.

Receivers here are `httpx.MockTransport` handlers; waits are bounded by events
(a handler saw a request, `flush` returned), never by sleeping.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Coroutine

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.model.clock import Clock
from postscript_audience_lab.emulator.postscript.model.delivery import Delivery, WebhookDispatcher

WAIT_S = 30.0


def delivery(url: str = "https://hooks.example.com/ps") -> Delivery:
    return Delivery(
        shop_id="shop_a",
        webhook_id="w1",
        callback_url=url,
        payload={"event": "shop.test", "event_data": {}},
        headers={"Postscript-Signature": "whsec_x", "X-Custom": "secret-value"},
    )


def answering(statuses: list[int], seen: list[httpx.Request]) -> Callable[[], httpx.MockTransport]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses.pop(0) if statuses else 200)

    return lambda: httpx.MockTransport(handler)


def test_answers_other_than_200_are_retried_until_a_200_and_every_attempt_is_journaled() -> None:
    seen: list[httpx.Request] = []
    dispatcher = WebhookDispatcher(
        (30.0, 30.0, 30.0), transport=answering([500, 302, 204, 200], seen)
    )
    dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)
    (done,) = dispatcher.deliveries()
    assert done.state == "delivered"
    assert [a.status for a in done.attempts] == [500, 302, 204, 200]
    assert len(seen) == 4
    assert seen[0].headers["postscript-signature"] == "whsec_x"
    dispatcher.stop()


def test_attempts_stop_after_the_last_retry_delay() -> None:
    seen: list[httpx.Request] = []
    dispatcher = WebhookDispatcher((30.0, 30.0), transport=answering([500] * 10, seen))
    dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)
    (done,) = dispatcher.deliveries()
    assert done.state == "failed"
    assert [a.number for a in done.attempts] == [1, 2, 3]
    assert len(seen) == 3


def test_a_refused_connection_is_an_attempt_with_an_error_and_no_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    dispatcher = WebhookDispatcher((), transport=lambda: httpx.MockTransport(refuse))
    dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)
    (attempt,) = dispatcher.deliveries()[0].attempts
    assert attempt.status is None
    assert attempt.error == "ConnectError: connection refused"


def test_an_exception_of_any_kind_is_recorded_not_lost() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise AssertionError("an HTTP mock refused the request")

    dispatcher = WebhookDispatcher((), transport=lambda: httpx.MockTransport(explode))
    dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)  # settles instead of hanging
    assert dispatcher.deliveries()[0].state == "failed"


def test_submit_returns_while_the_receiver_is_still_answering() -> None:
    arrived, release = threading.Event(), threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        arrived.set()
        assert release.wait(WAIT_S)
        return httpx.Response(200)

    dispatcher = WebhookDispatcher((), transport=lambda: httpx.MockTransport(slow))
    dispatcher.submit(delivery())  # returns: the caller never waits for the receiver
    assert arrived.wait(WAIT_S)
    assert dispatcher.deliveries()[0].state == "pending"
    release.set()
    assert dispatcher.flush(WAIT_S)
    assert dispatcher.deliveries()[0].state == "delivered"


def test_the_journal_never_holds_header_values() -> None:
    seen: list[httpx.Request] = []
    dispatcher = WebhookDispatcher((), transport=answering([], seen))
    dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)
    journaled = str(dispatcher.deliveries()[0].to_json())
    assert "whsec_x" not in journaled
    assert "secret-value" not in journaled
    assert "X-Custom" in journaled  # the custom header's name is shown


def test_stop_cancels_what_is_pending_and_clear_forgets_the_journal() -> None:
    arrived = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        arrived.set()
        threading.Event().wait(WAIT_S)  # would hold the attempt; stop must not wait for it
        return httpx.Response(200)

    async_hang = _async_handler_of(hang)
    dispatcher = WebhookDispatcher((), transport=lambda: httpx.MockTransport(async_hang))
    dispatcher.submit(delivery())
    assert arrived.wait(WAIT_S)
    dispatcher.stop()
    assert dispatcher.deliveries()[0].state == "cancelled"
    dispatcher.clear()
    assert dispatcher.deliveries() == []


def _async_handler_of(
    handler: Callable[[httpx.Request], httpx.Response],
) -> Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]:
    """Run a blocking handler in a thread, so cancelling the attempt cancels the await."""
    import anyio

    async def run(request: httpx.Request) -> httpx.Response:
        return await anyio.to_thread.run_sync(handler, request, abandon_on_cancel=True)

    return run


@pytest.mark.parametrize("count", [1, 5])
def test_every_submitted_delivery_settles(count: int) -> None:
    seen: list[httpx.Request] = []
    dispatcher = WebhookDispatcher((0.0,), transport=answering([], seen))
    for _ in range(count):
        dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)
    assert [d.state for d in dispatcher.deliveries()] == ["delivered"] * count
    assert len(seen) == count


def test_by_default_a_failing_callback_is_retried_every_5_minutes_for_an_hour_of_clock() -> None:
    clock = Clock()
    dispatcher = WebhookDispatcher(transport=answering([500] * 20, []), clock=clock)
    started = clock.now()
    dispatcher.submit(delivery())
    assert dispatcher.flush(WAIT_S)
    (done,) = dispatcher.deliveries()
    assert done.state == "failed"
    offsets = [(a.at - started).total_seconds() for a in done.attempts]
    assert len(offsets) == 13
    assert [round(b - a) for a, b in itertools.pairwise(offsets)] == [300] * 12
    assert 3600 <= offsets[-1] < 3600 + 5
    dispatcher.stop()


def test_moving_the_clock_makes_the_retries_due_by_then_and_no_more() -> None:
    clock = Clock()
    seen: list[httpx.Request] = []
    dispatcher = WebhookDispatcher(transport=answering([503, 503, 503, 200], seen), clock=clock)
    dispatcher.submit(delivery())
    clock.advance(0)
    assert dispatcher.catch_up(WAIT_S)
    assert len(seen) == 1
    clock.advance(299)
    assert dispatcher.catch_up(WAIT_S)
    assert len(seen) == 1  # not due yet: 5 minutes after the first attempt
    clock.advance(2)
    assert dispatcher.catch_up(WAIT_S)
    assert len(seen) == 2
    clock.advance(600)  # a retry every 5 minutes: one at +10 min, the next due at +15
    assert dispatcher.catch_up(WAIT_S)
    assert len(seen) == 3
    assert dispatcher.deliveries()[0].state == "pending"
    dispatcher.stop()
