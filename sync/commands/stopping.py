"""A batch command's SIGTERM: the drain under way ends once its calls in flight are answered.

A scheduler stops a job with SIGTERM (then SIGKILL after a grace period). Killed outright, a run may
leave an event that Postscript stored but the journal did not
(docs/design/convergence.md#nothing-lost), and the next run posts it again. Here the first SIGTERM
asks the engine to stop (`Engine.request_stop`): nothing new starts, the calls already sent are
answered and journaled, and the drain returns; a second SIGTERM stops at once."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import SyncError

__all__ = ["EXIT_STOPPED", "GracefulStop"]

T = TypeVar("T")
EXIT_STOPPED = 128 + signal.SIGTERM  # what a shell reports for a process a SIGTERM ended


class GracefulStop:
    """Runs a command's async work with SIGTERM handled as above; `asked` tells whether one came."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.asked = False

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()`'s result; what it raises is raised as itself, never inside a group."""
        outcome: list[T] = []
        failure: list[Exception] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._watch, tasks.cancel_scope)
            try:
                outcome.append(await work())
            except Exception as raised:  # let the task group end cleanly, then raise it
                failure.append(raised)
            tasks.cancel_scope.cancel()
        if failure:
            raise failure[0]
        if not outcome:
            raise SyncError("stopped by a second SIGTERM; run again with the same --state")
        return outcome[0]

    async def _watch(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                if self.asked:
                    scope.cancel()
                    return
                self.asked = True
                self.engine.request_stop()
