"""Injected faults: error answers, latency and timeouts, drawn from a seeded RNG.

Faults hit API requests only, after auth and the rate limit and before the
handler, so a faulted request never changes state. Each request draws, in
order: timeout?, error?, latency — so one seed gives one sequence.

A timeout holds the request for `timeout_ms`, then drops the connection:
over a real server the client sees the connection close mid-response
(`httpx.RemoteProtocolError`), or its own read timeout if that is shorter;
in-process (`httpx.ASGITransport`) the same `ConnectionDropped`, a subclass
of `httpx.RemoteProtocolError`, is raised to the caller.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

import anyio
import httpx

from postscript_audience_lab.emulator.postscript.errors import error_body, error_headers, invalid
from postscript_audience_lab.emulator.postscript.web.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    is_api_request,
    send_json,
)

__all__ = [
    "MAX_RATE_LIMIT_RPS",
    "MAX_WAIT_MS",
    "ConnectionDropped",
    "FaultDraw",
    "FaultMiddleware",
    "FaultSettings",
    "Faults",
    "parse_settings",
]


class ConnectionDropped(httpx.RemoteProtocolError):
    """The emulator hung up on purpose (a `timeout_rate` fault)."""


@dataclass
class FaultSettings:
    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500])
    latency_ms: tuple[float, float] = (0.0, 0.0)
    timeout_rate: float = 0.0
    timeout_ms: float = 3000.0
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["latency_ms"] = list(self.latency_ms)
        return doc


@dataclass(frozen=True)
class FaultDraw:
    latency_s: float
    error_status: int | None
    timeout: bool


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._rng = random.Random()

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            self._rng = random.Random(settings.seed)

    def draw(self) -> FaultDraw | None:
        """What happens to the next API request; None when no fault is configured."""
        s = self.settings
        if s.error_rate <= 0 and s.timeout_rate <= 0 and s.latency_ms[1] <= 0:
            return None
        with self._lock:
            timeout = s.timeout_rate > 0 and self._rng.random() < s.timeout_rate
            error = s.error_rate > 0 and self._rng.random() < s.error_rate
            status = self._rng.choice(s.error_statuses) if error else None
            lo, hi = s.latency_ms
            latency = self._rng.uniform(lo, hi) / 1000 if hi > 0 else 0.0
        return FaultDraw(latency_s=latency, error_status=status, timeout=timeout)


MAX_RATE_LIMIT_RPS = 1_000_000
MAX_WAIT_MS = 3_600_000  # latency and timeouts: an hour is longer than any client waits
_FIELDS = (
    "error_rate",
    "error_statuses",
    "latency_ms",
    "timeout_rate",
    "timeout_ms",
    "rate_limit_rps",
    "seed",
)


def parse_settings(body: dict[str, Any], current_rps: float) -> tuple[FaultSettings, float]:
    """`PUT /_emulator/faults`: the whole setting; omitted fields take their defaults.

    An omitted `rate_limit_rps` keeps the current limit. Every number must be
    finite and in range, so that the setting can be served back and slept on.
    """
    for key in body:
        if key not in _FIELDS:
            raise invalid(
                ["body", key],
                f"unknown field; allowed fields are {', '.join(sorted(_FIELDS))}",
                "value_error.extra",
            )
    probability = "must be a probability from 0 to 1"
    settings = FaultSettings(
        error_rate=_number(body, "error_rate", 0.0, 1, probability),
        timeout_rate=_number(body, "timeout_rate", 0.0, 1, probability),
        timeout_ms=_number(
            body,
            "timeout_ms",
            FaultSettings.timeout_ms,
            MAX_WAIT_MS,
            f"must be milliseconds from 0 to {MAX_WAIT_MS:,}",
        ),
    )
    if "error_statuses" in body:
        settings.error_statuses = _statuses(body["error_statuses"])
    if "latency_ms" in body:
        settings.latency_ms = _latency(body["latency_ms"])
    if body.get("seed") is not None:
        if not isinstance(body["seed"], int) or isinstance(body["seed"], bool):
            raise invalid(["body", "seed"], "must be an integer", "type_error.integer")
        settings.seed = body["seed"]
    rps = _number(
        body,
        "rate_limit_rps",
        current_rps,
        MAX_RATE_LIMIT_RPS,
        f"must be requests per second from 0 to {MAX_RATE_LIMIT_RPS:,} (0 turns the limit off)",
    )
    return settings, rps


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_range(value: object, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # NaN fails both comparisons; an integer too big for a float compares without converting
    return 0 <= value <= high


def _number(body: dict[str, Any], name: str, default: float, high: float, message: str) -> float:
    value = body.get(name, default)
    if not _in_range(value, high):
        raise invalid(["body", name], message, "value_error")
    return float(value)


def _statuses(value: object) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(_is_number(s) and 400 <= s <= 599 and int(s) == s for s in value)
    ):
        raise invalid(
            ["body", "error_statuses"],
            "must be a non-empty list of HTTP statuses from 400 to 599",
            "value_error",
        )
    return [int(s) for s in value]


def _latency(value: object) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(_in_range(bound, MAX_WAIT_MS) for bound in value)
        or value[0] > value[1]
    ):
        raise invalid(
            ["body", "latency_ms"],
            f"must be [low, high] milliseconds with 0 <= low <= high <= {MAX_WAIT_MS:,}",
            "value_error",
        )
    return float(value[0]), float(value[1])


class FaultMiddleware:
    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        draw = self.faults.draw() if is_api_request(scope) else None
        if draw is None:
            await self.app(scope, receive, send)
            return
        if draw.timeout:
            scope["pslab.fault"] = "timeout"
            await anyio.sleep(self.faults.settings.timeout_ms / 1000)
            # Start a response the client can never finish reading, then hang up.
            await send(
                {
                    "type": "http.response.start",
                    "status": HTTPStatus.GATEWAY_TIMEOUT,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
                }
            )
            raise ConnectionDropped("the emulator dropped the connection (timeout fault)")
        if draw.latency_s > 0:
            await anyio.sleep(draw.latency_s)
        if draw.error_status is not None:
            scope["pslab.fault"] = "error"
            status = draw.error_status
            headers = [(k.encode(), v.encode()) for k, v in error_headers(status).items()]
            await send_json(send, status, error_body(status), headers)
            return
        await self.app(scope, receive, send)
