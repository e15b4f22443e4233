"""Running the emulator on a real socket: in a background thread, or in the foreground."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from emulator.postscript.app import create_app
from emulator.postscript.config import EmulatorConfig
from emulator.postscript.faults import ConnectionDropped


class _QuietDroppedConnections(logging.Filter):
    """A timeout fault drops a connection on purpose; uvicorn need not log its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


logging.getLogger("uvicorn.error").addFilter(_QuietDroppedConnections())


def _server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    return uvicorn.Server(config)


def _base_url(server: uvicorn.Server, host: str) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextmanager
def serve_in_background(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve a fresh emulator on a real uvicorn server in a thread; yield its base URL.

    `port=0` picks a free port. The server stops when the block exits.
    """
    server = _server(create_app(config), host, port)
    thread = threading.Thread(target=server.run, name="pslab-emulator", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(
                f"the emulator could not start on {host}:{port}; is the port in use?"
            )
        threading.Event().wait(0.01)
    try:
        yield _base_url(server, host)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve_forever(app: Starlette, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve in the foreground until interrupted; `on_ready` gets the base URL once listening."""
    server = _server(app, host, port)
    # Everything loaded so far (a seed can be 100k subscribers) lives as long as the
    # process; freezing it keeps full GC passes, and the latency spikes they cause, short.
    gc.collect()
    gc.freeze()

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        # uvicorn exposes readiness only as a flag, so poll it
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            on_ready(_base_url(server, host))
        await serving

    asyncio.run(run())
    if not server.started:
        raise RuntimeError(f"the emulator could not start on {host}:{port}; is the port in use?")
