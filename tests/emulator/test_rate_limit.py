"""The token bucket behind the 429s: capacity rps, refilled at rps per second, per key."""

from __future__ import annotations

from postscript_audience_lab.emulator.postscript.web.rate_limit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_rps_requests_at_once_then_refuses() -> None:
    limiter = RateLimiter(15, clock=FakeClock())
    allowed = [limiter.allow("k") for _ in range(16)]
    assert allowed == [True] * 15 + [False]


def test_the_bucket_refills_at_rps_per_second() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    for _ in range(10):
        limiter.allow("k")
    clock.now += 0.25  # 2.5 tokens
    assert [limiter.allow("k") for _ in range(3)] == [True, True, False]
    clock.now += 60  # never more than capacity
    assert sum(limiter.allow("k") for _ in range(20)) == 10


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(1, clock=FakeClock())
    assert (limiter.allow("a"), limiter.allow("a"), limiter.allow("b")) == (True, False, True)


def test_zero_rps_is_no_limit() -> None:
    limiter = RateLimiter(0, clock=FakeClock())
    assert all(limiter.allow("k") for _ in range(1000))


def test_a_fractional_rate_still_lets_one_request_through() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock)
    assert (limiter.allow("k"), limiter.allow("k")) == (True, False)
    clock.now += 2
    assert limiter.allow("k")


def test_changing_the_rate_starts_every_bucket_full() -> None:
    limiter = RateLimiter(1, clock=FakeClock())
    limiter.allow("k")
    limiter.rps = 3
    assert [limiter.allow("k") for _ in range(4)] == [True, True, True, False]
