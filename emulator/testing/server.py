"""The emulator on a real socket, for clients that are not httpx or run in another process.

`serve_postscript()` serves a fresh emulator on a free loopback port for the
length of a `with` block and yields a `Postscript` handle on it (its
`base_url` is the server's URL). `ServerPool` keeps one such server per
secret key for a whole pytest session: the `postscript_server` fixture
resets it between tests instead of starting a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY
from postscript_audience_lab.emulator.testing.handle import Postscript

__all__ = ["ServerPool", "serve_postscript"]


@contextmanager
def serve_postscript(
    *,
    secret_key: str = DEFAULT_SECRET_KEY,
    rate_limit: float = 15.0,
    host: str = "127.0.0.1",
    port: int = 0,
    strict: bool = False,
    webhook_retry_delays: tuple[float, ...] | None = None,
) -> Iterator[Postscript]:
    """Serve a fresh emulator on uvicorn in a background thread (`port=0` picks a free one)."""
    # Only now, so that loading the pytest plugin never loads the web stack.
    from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
    from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background

    config = EmulatorConfig(secret_key=secret_key, rate_limit_rps=rate_limit, strict=strict)
    if webhook_retry_delays is not None:
        config.webhook_retry_delays = tuple(webhook_retry_delays)
    with (
        serve_in_background(config, host, port) as base_url,
        Postscript.connect(base_url, secret_key) as postscript,
    ):
        yield postscript


class ServerPool:
    """One served emulator per secret key, mode and retry schedule (what a running server
    cannot change), each started when first asked for."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, bool, tuple[float, ...] | None], Postscript] = {}
        self._running = ExitStack()

    def server(
        self,
        secret_key: str,
        *,
        strict: bool = False,
        webhook_retry_delays: tuple[float, ...] | None = None,
    ) -> Postscript:
        key = (secret_key, strict, webhook_retry_delays)
        if key not in self._servers:
            self._servers[key] = self._running.enter_context(
                serve_postscript(
                    secret_key=secret_key, strict=strict, webhook_retry_delays=webhook_retry_delays
                )
            )
        return self._servers[key]

    def close(self) -> None:
        self._servers.clear()
        self._running.close()
