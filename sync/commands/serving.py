"""How `pslab serve` runs a web app: bind first, check the keys, serve until a stop
(docs/design/service.md), for one shop or many (docs/design/service.md#many-shops).

The order of a start is chosen so that a refusal changes nothing: the port is
bound (a taken port fails at once), the state files locked, the keys checked
(`Front.prepare`), and only then are requests answered. A stop (SIGTERM,
SIGINT) answers 503 to new requests (`Front.stop_accepting`), lets the ones in
flight finish, and ends the serving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import NamedTuple, NoReturn, TypeVar

import httpx
import typer
import uvicorn
from starlette.applications import Starlette

from postscript_audience_lab.httpguard import ConnectionLimits, GuardCounts, guarded_h11
from postscript_audience_lab.sync.errors import SyncError

__all__ = [
    "Bodies",
    "Front",
    "fail",
    "is_loopback",
    "listen",
    "run_server",
    "stoppable",
    "warn",
    "warn_if_open",
]

log = logging.getLogger("pslab.serve")

GRACEFUL_STOP_S = 5  # requests in flight get this long to finish once a stop is asked for
T = TypeVar("T")


class Front(NamedTuple):
    """What the server runs, and what it asks of it around the serving."""

    app: Starlette
    stop_accepting: Callable[[], None]  # a stop was asked for
    prepare: Callable[[], Awaitable[None]]  # before requests are answered: check the keys
    announce: Callable[[str], None]  # listening, at this URL


def run_server(
    front: Front,
    listener: socket.socket,
    limits: ConnectionLimits,
    connections: GuardCounts,
    postscript: httpx.AsyncBaseTransport,
) -> bool:
    """Serve `front` on `listener` until stopped; False when stopped before serving."""
    config = uvicorn.Config(
        front.app,
        log_config=None,  # uvicorn's records go through log_to_stderr's JSON lines
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
        timeout_keep_alive=int(limits.keep_alive_s),
        # h11 (whatever else is installed) drops a connection whose request head grows
        # past 16 KiB, where httptools would buffer a header of any size; the guard adds
        # head and body deadlines and a connection limit (docs/design/service.md).
        http=guarded_h11(limits, connections),
    )
    server = _Server(config, front.stop_accepting)
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(_run(server, front, listener, postscript))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log.info("stopped_before_serving")
        return False
    return True


async def _run(
    server: uvicorn.Server,
    front: Front,
    listener: socket.socket,
    postscript: httpx.AsyncBaseTransport,
) -> None:
    try:
        await front.prepare()
        # uvicorn takes SIGTERM and SIGINT from here on, and raises the one that stopped it
        # again once it has shut down: let that find a handler that does nothing.
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, _stopped)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        # uvicorn exposes readiness only as a flag, so poll it
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            front.announce(_base_url(listener))
        await serving
        if not server.started:
            raise SyncError("the server did not start; its log above says why")
    finally:
        await postscript.aclose()


async def stoppable(check: Awaitable[T]) -> T:
    """A start's `GET /me`, before anything is stored; a SIGTERM meanwhile stops the start
    (Ctrl-C too)."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None, "called from a task"
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await check
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the service the moment a stop is asked for."""

    def __init__(self, config: uvicorn.Config, stop_accepting: Callable[[], None]) -> None:
        super().__init__(config)
        self._stop_accepting = stop_accepting

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop_accepting()
        if not self.should_exit:
            log.info("stopping", extra={"fields": {"signal": signal.Signals(sig).name}})
        super().handle_exit(sig, frame)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """The signal that stopped uvicorn, raised again once it has shut down: nothing to do."""


def listen(host: str, port: int) -> socket.socket:
    """Bind now, so that a port in use stops the start before the state file is touched."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        fail(f"cannot listen on {host}:{port} ({error.strerror or error}); pass another --port")
    # Nagle's algorithm off here and in every accepted connection: asyncio does it only for a
    # socket whose protocol number is TCP, which create_server's is not, and an answer would
    # otherwise wait ~40 ms for the sender's delayed ACK (uvloop, when installed, did it).
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def _base_url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) can only be reached from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


class Bodies(NamedTuple):
    largest: int  # one request's body
    inflight: int  # all bodies being read at once


def warn(message: str) -> None:
    print(f"pslab serve: warning: {message}", file=sys.stderr)


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab serve: {message}", file=sys.stderr)
    raise typer.Exit(code)


def warn_if_open(required: bool, host: str, port: int) -> None:
    """Warn when requests need no credential and `host` is reachable from elsewhere."""
    if not required and not is_loopback(host):
        warn(
            f"serving without credentials on {host}: anyone who can reach port {port} can post "
            "events that change Postscript; --insecure-no-auth is meant for loopback tests"
        )
