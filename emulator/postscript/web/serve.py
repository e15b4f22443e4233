"""Running the emulator on a real socket: in a background thread, or in the foreground."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.web.faults import ConnectionDropped
from postscript_audience_lab.httpguard import ConnectionLimits, guarded_h11

__all__ = ["listen", "serve_app_in_background", "serve_forever", "serve_in_background"]


class _QuietDroppedConnections(logging.Filter):
    """A timeout fault drops a connection on purpose; uvicorn need not log its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


logging.getLogger("uvicorn.error").addFilter(_QuietDroppedConnections())


def _server(app: Starlette, limits: ConnectionLimits | None = None) -> uvicorn.Server:
    # h11 whatever else is installed: it drops a connection whose request head grows past
    # 16 KiB, where httptools would buffer a header of any size. The guard closes a client
    # that holds a connection without finishing its request (docs/design/service.md).
    http = guarded_h11(limits or ConnectionLimits())
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=http)
    return uvicorn.Server(config)


def listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn, which exits the process when the port is taken.

    The listener has Nagle's algorithm off, and so has every connection it accepts (they
    inherit it). asyncio turns it off only for sockets whose protocol is TCP by number, and
    `socket.create_server` leaves it 0: without this, each response waited for the client's
    delayed ACK, about 40 ms a request (0.7 ms with it), unless uvloop was installed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise RuntimeError(
            f"cannot listen on {host}:{port} ({reason}); choose another host or port"
        ) from None
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def _base_url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextmanager
def serve_app_in_background(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: ConnectionLimits | None = None,
) -> Iterator[str]:
    """Serve `app` on a real uvicorn server in a thread; yield its base URL.

    `port=0` picks a free port. The server stops when the block exits.
    """
    sock = listen(host, port)
    server = _server(app, limits)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="pslab-emulator", daemon=True
    )
    thread.start()
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"the server could not start on {host}:{port}")
        threading.Event().wait(0.01)
    try:
        yield _base_url(sock, host)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serve_in_background(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve a fresh emulator on a real uvicorn server in a thread; yield its base URL."""
    app = create_app(config)
    try:
        with serve_app_in_background(app, host, port) as base_url:
            yield base_url
    finally:
        app.state.emulator.close()  # and the webhook deliveries still pending


def serve_forever(app: Starlette, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve in the foreground until interrupted; `on_ready` gets the base URL once listening.

    Raises RuntimeError, saying why, when it cannot listen on `host:port`.
    """
    sock = listen(host, port)
    server = _server(app)
    # Everything loaded so far (a seed can be 100k subscribers) lives as long as the
    # process; freezing it keeps full GC passes, and the latency spikes they cause, short.
    gc.collect()
    gc.freeze()

    async def run() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        # uvicorn exposes readiness only as a flag, so poll it
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            on_ready(_base_url(sock, host))
        await serving

    try:
        # uvloop when it is installed, as `uvicorn.run` would choose
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(run())
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled once it has shut down cleanly
    finally:
        sock.close()
        app.state.emulator.close()  # stop sending webhooks
