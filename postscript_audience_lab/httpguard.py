"""HTTP connections that a hostile client cannot hold: uvicorn's h11 protocol with deadlines.

uvicorn bounds a request head's size (h11 drops one past 16 KiB) and closes an
idle keep-alive connection, but it waits for ever for a head or a body that is
never finished, and accepts connections until the process runs out of file
descriptors. Each of those lets anyone who can reach the port take the service
down without a credential. `guarded_h11` adds what uvicorn leaves out:

- a request head must arrive within `head_timeout_s` of the connection (or of
  the previous response on a kept-alive one), its body within `body_timeout_s`
  of the head; a connection that misses either is closed;
- at most `max_connections` are open: one more closes the oldest connection
  still waiting for its head (a slow sender, or an attacker holding sockets), so a
  client that sends its request at once is served however many idle sockets are
  held; when none is waiting, the new connection is closed instead.

`pslab serve` and the emulator both serve through it (docs/design/service.md).
A leaf module: it imports nothing of the package.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "GuardCounts", "guarded_h11", "raise_open_file_limit"]

log = logging.getLogger("pslab.http")

SPARE_DESCRIPTORS = 256  # files, the state database, outgoing connections to Postscript


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many connections may be open at once."""

    max_connections: int = 1000
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0  # uvicorn's idle timeout between requests on one connection

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        for name in ("head_timeout_s", "body_timeout_s", "keep_alive_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


@dataclass
class GuardCounts:
    """What the guard has done since the server started (for /status and the tests)."""

    open: int = 0
    head_timeouts: int = 0
    body_timeouts: int = 0
    evicted: int = 0  # closed to make room for a new connection
    refused: int = 0  # new connections closed at once: all open ones were busy

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def guarded_h11(limits: ConnectionLimits, counts: GuardCounts | None = None) -> type[H11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` that holds `limits`.

    Each call makes a class of its own, so that two servers in one process (a test's
    emulator and its `pslab serve`) count their connections apart.
    """
    tally = counts if counts is not None else GuardCounts()

    class GuardedH11(_GuardedH11):
        _limits = limits
        _counts = tally
        _waiting: ClassVar[dict[_GuardedH11, None]] = {}  # oldest first (dicts keep order)

    return GuardedH11


class _GuardedH11(H11Protocol):
    _limits: ClassVar[ConnectionLimits]
    _counts: ClassVar[GuardCounts]
    _waiting: ClassVar[dict[_GuardedH11, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The deadline is a time and a kind; the one timer behind it is armed for it or for
        # an earlier time, and re-armed when it fires early, so that the usual request,
        # which meets its deadline, neither makes nor cancels a timer.
        self._due: float | None = None
        self._due_is_body = False
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_for = 0.0
        self._timed_cycle: object = None  # the latest request whose head has come
        self._reading_body = False

    # -- uvicorn's hooks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        counts = self._counts
        counts.open = len(self.connections)
        self._wait_for_head()
        if len(self.connections) > self._limits.max_connections:
            oldest = next((held for held in self._waiting if held is not self), None)
            if oldest is None:
                counts.refused += 1
                self._close()
            else:
                counts.evicted += 1
                oldest._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._waiting.pop(self, None)
        super().connection_lost(exc)
        self._counts.open = len(self.connections)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and cycle is not self._timed_cycle:  # a new request's head came
            self._timed_cycle = cycle
            self._waiting.pop(self, None)
            self._stop_deadline()
            self._reading_body = cycle.more_body
            if self._reading_body:
                self._start_deadline(self._limits.body_timeout_s, body=True)
        elif self._reading_body and cycle is not None and not cycle.more_body:
            self._reading_body = False  # the whole body is in
            self._stop_deadline()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._wait_for_head()  # for the next request on this connection, if any comes
        super().on_response_complete()  # may start a pipelined request: handle_events sees it

    # -- deadlines ------------------------------------------------------------------

    def _wait_for_head(self) -> None:
        self._timed_cycle = self.cycle
        self._reading_body = False
        self._waiting[self] = None
        self._stop_deadline()
        self._start_deadline(self._limits.head_timeout_s, body=False)

    def _start_deadline(self, seconds: float, *, body: bool) -> None:
        due = self.loop.time() + seconds
        if self._deadline is None or due < self._armed_for:
            self._disarm()
            self._deadline = self.loop.call_at(due, self._check_deadline)
            self._armed_for = due
        self._due, self._due_is_body = due, body

    def _stop_deadline(self) -> None:
        self._due = None  # the timer, if armed, finds nothing due when it fires

    def _disarm(self) -> None:
        self._due = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _check_deadline(self) -> None:
        self._deadline = None
        due = self._due
        if due is None:
            return
        if self.loop.time() < due:  # moved on since the timer was armed
            self._deadline = self.loop.call_at(due, self._check_deadline)
            self._armed_for = due
            return
        self._late(self._due_is_body)

    def _late(self, body: bool) -> None:
        self._due = None
        if body:
            self._counts.body_timeouts += 1
        else:
            self._counts.head_timeouts += 1
        self._close()

    def _close(self) -> None:
        self._waiting.pop(self, None)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()


def raise_open_file_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise this process's soft limit on open files so that `limits` fits, as far as the
    hard limit allows; `limits` with fewer connections when it does not (and a warning)."""
    needed = limits.max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limits
    fitting = max(1, soft - SPARE_DESCRIPTORS)
    log.warning(
        "connections_limited",
        extra={"fields": {"asked": limits.max_connections, "open_files": soft, "kept": fitting}},
    )
    return dataclasses.replace(limits, max_connections=fitting)
