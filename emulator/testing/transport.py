"""An in-process emulator as an httpx transport that serves sync and async clients alike.

httpx's own `ASGITransport` serves only async clients. Async requests here
run the app on the caller's event loop, as `ASGITransport` does. A sync
request from a thread with no running event loop runs the app right there,
on an event loop of the transport's own; one made while that loop is busy
(another thread's request), or from inside a running event loop, runs it on a
second loop in a daemon thread started on first use. So a sync client works
in plain code, from a thread pool and inside a running event loop alike, the
common case (a plain test) costs no thread and no hop between threads, and a
transport nobody shut down never keeps the interpreter from exiting.

The emulator's state is shared by every loop that calls it: its store, rate
limiter and fault draws are guarded by thread locks (docs/design/emulator.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

__all__ = ["ASGIApp", "EmulatorTransport"]

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class EmulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Sends each request to an ASGI app in this process; exceptions the app raises propagate.

    A timeout fault therefore reaches the caller as the emulator's
    `ConnectionDropped`, an `httpx.RemoteProtocolError`, after `timeout_ms`.
    Clients may close it as they like; `shutdown()` stops its thread.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._lock = threading.Lock()
        self._here = threading.Lock()  # held while a thread runs the app on `_here_loop`
        self._here_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        answer = await self._asgi.handle_async_request(request)
        # Read whole, so the answer can be handed to a sync client or to respx as it is.
        content = await answer.aread()
        return httpx.Response(answer.status_code, headers=answer.headers, content=content)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a sync-only upload stream becomes bytes the app can await
        if not _in_running_loop() and self._here.acquire(blocking=False):
            try:
                if self._here_loop is None:
                    self._here_loop = asyncio.new_event_loop()
                return self._here_loop.run_until_complete(self.handle_async_request(request))
            finally:
                self._here.release()
        pending = asyncio.run_coroutine_threadsafe(
            self.handle_async_request(request), self._sync_loop()
        )
        return pending.result()

    def close(self) -> None:
        """Nothing to release per client: the emulator outlives the clients that use it."""

    async def aclose(self) -> None:
        """Nothing to release per client: the emulator outlives the clients that use it."""

    def shutdown(self) -> None:
        """Close the loops that serve sync clients and stop the thread (made again if one
        calls later)."""
        if self._here.acquire(timeout=10):
            try:
                if self._here_loop is not None:
                    self._here_loop.close()
                    self._here_loop = None
            finally:
                self._here.release()
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def _sync_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="pslab-emulator-sync", daemon=True
                )
                self._thread.start()
            return self._loop


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
