"""Postscript's per-key request rate, as a token bucket per key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from postscript_audience_lab.emulator.postscript.errors import RATE_LIMIT_BODY
from postscript_audience_lab.emulator.postscript.web.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    is_api_request,
    send_json,
)

__all__ = ["RateLimitMiddleware", "RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Capacity `rps` tokens (at least one), refilled at `rps` per second; 0 turns it off."""

    def __init__(self, rps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._rps = rps

    @property
    def rps(self) -> float:
        return self._rps

    @rps.setter
    def rps(self, value: float) -> None:
        with self._lock:
            self._rps = value
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def allow(self, key: str) -> bool:
        if self._rps <= 0:
            return True
        now = self._clock()
        capacity = max(self._rps, 1.0)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=capacity, updated=now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * self._rps)
            bucket.updated = now
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True


class RateLimitMiddleware:
    """Runs after auth, so the key in the scope is a valid one."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_api_request(scope) and not self.limiter.allow(str(scope.get("pslab.key", ""))):
            await send_json(send, 429, RATE_LIMIT_BODY)
            return
        await self.app(scope, receive, send)
