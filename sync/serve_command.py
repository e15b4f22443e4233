"""`pslab serve`: the engine as a service, until SIGTERM or Ctrl-C (docs/design.md §11).

The order of a start is chosen so that a refusal changes nothing: the port is
bound (a taken port fails at once), the state file locked, the shop checked
with `GET /me`, and only then are requests answered. A stop (SIGTERM, SIGINT)
answers 503 to new requests, lets the ones in flight finish (each is committed
before its 200), cancels the drain (a write in flight stays journaled, design
§4.4) and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import httpx
import phonenumbers
import typer
import uvicorn
from stamina.instrumentation import set_on_retry_hooks

from sync.engine import Engine
from sync.errors import AuthenticationError, SyncError
from sync.intake import MAX_BODY_BYTES, Credentials
from sync.keys import COMMAND_LINE_WARNING, KeySourceError, secret_key
from sync.logs import log_to_stderr
from sync.metrics import ServiceMetrics
from sync.service import Service
from sync.settings import Settings

__all__ = ["serve_command"]

log = logging.getLogger("pslab.serve")

GRACEFUL_STOP_S = 5  # requests in flight get this long to finish once a stop is asked for


def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8788,
    state: Annotated[Path, typer.Option(help="SQLite state file; keep it between runs.")] = Path(
        "pslab-state.sqlite"
    ),
    base_url: Annotated[
        str, typer.Option(help="Postscript API base URL (the emulator's, in the lab).")
    ] = "https://api.postscript.io",
    secret_key_option: Annotated[
        str | None,
        typer.Option(
            "--secret-key",
            envvar="POSTSCRIPT_SECRET_KEY",
            help="Postscript secret API key. Prefer POSTSCRIPT_SECRET_KEY or --secret-key-file:"
            " a value given here is visible to every user of the machine.",
            show_default=False,
        ),
    ] = None,
    secret_key_file: Annotated[
        Path | None, typer.Option(help="Read the secret key from this file (its first line).")
    ] = None,
    write_key: Annotated[
        str | None,
        typer.Option(
            envvar="PSLAB_WRITE_KEY",
            help="Accept requests whose HTTP Basic user is this key (Segment's HTTP API form).",
            show_default=False,
        ),
    ] = None,
    shared_secret: Annotated[
        str | None,
        typer.Option(
            envvar="PSLAB_SHARED_SECRET",
            help="Accept requests whose X-Signature is the HMAC-SHA1 of the body under this"
            " secret (Segment's Webhooks (Actions) destination).",
            show_default=False,
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Accept requests without credentials (tests on loopback)."
        ),
    ] = False,
    rate_limit: Annotated[
        float,
        typer.Option(min=0.0, help="Requests per second to stay under; 0 turns pacing off."),
    ] = 15.0,
    no_drain: Annotated[
        bool,
        typer.Option("--no-drain", help="Only take events in; write nothing to Postscript."),
    ] = False,
    no_events: Annotated[
        bool, typer.Option("--no-events", help="Update the list only; post no custom events.")
    ] = False,
    default_region: Annotated[
        str, typer.Option(help="Region for phone numbers written without a country code.")
    ] = "US",
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Largest request body taken (413 beyond).")
    ] = MAX_BODY_BYTES,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds before one Postscript request times out.")
    ] = 10.0,
) -> None:
    """Take Segment's events over HTTP and drain them into Postscript, until stopped."""
    try:
        key = secret_key(secret_key_option, secret_key_file)
    except KeySourceError as exc:
        _fail(str(exc), code=2)
    if secret_key_file is None:
        _warn_if_on_command_line(ctx, "secret_key_option", COMMAND_LINE_WARNING)
    credentials = _credentials(ctx, write_key, shared_secret, insecure=insecure_no_auth)
    if default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        _fail(f"--default-region {default_region!r} is not a region code such as US or GB", code=2)
    settings = Settings(
        base_url=base_url,
        secret_key=key,
        state_path=state,
        rate_limit=rate_limit,
        post_events=not no_events,
        default_region=default_region.upper(),
        timeout_s=timeout,
        retry_forever=True,
    )
    log_to_stderr()
    listener = _listen(host, port)
    try:
        _serve(settings, credentials, listener, drain=not no_drain, max_body_bytes=max_body_bytes)
    except AuthenticationError as exc:
        _fail(f"Postscript refused the secret key (HTTP {exc.status}); check the key")
    except SyncError as exc:
        _fail(str(exc))
    except sqlite3.DatabaseError as exc:
        _fail(f"{state} is not a usable pslab state file ({exc}); pass another --state")
    except OSError as exc:
        _fail(f"{exc.filename or state}: {exc.strerror or exc}")
    finally:
        listener.close()


def _credentials(
    ctx: typer.Context, write_key: str | None, shared_secret: str | None, *, insecure: bool
) -> Credentials:
    """What requests must carry; one of the two is required unless `insecure`."""
    secrets = (("write_key", "PSLAB_WRITE_KEY"), ("shared_secret", "PSLAB_SHARED_SECRET"))
    for name, variable in secrets:
        flag = "--" + name.replace("_", "-")
        warning = f"{flag} is visible to every user of this machine; prefer {variable}"
        _warn_if_on_command_line(ctx, name, warning)
    credentials = Credentials(write_key=write_key or None, shared_secret=shared_secret or None)
    if not credentials.required and not insecure:
        _fail(
            "pass --write-key or --shared-secret (PSLAB_WRITE_KEY, PSLAB_SHARED_SECRET) so that"
            " only Segment can post; --insecure-no-auth serves without them",
            code=2,
        )
    return credentials


def _serve(
    settings: Settings,
    credentials: Credentials,
    listener: socket.socket,
    *,
    drain: bool,
    max_body_bytes: int,
) -> None:
    metrics = ServiceMetrics()
    postscript = httpx.AsyncHTTPTransport()
    with Engine(settings, metrics.meter(postscript)) as engine:
        service = Service(
            engine, credentials, metrics=metrics, drain=drain, max_body_bytes=max_body_bytes
        )
        set_on_retry_hooks([service.on_retry])
        config = uvicorn.Config(
            service.app,
            log_config=None,  # uvicorn's records go through log_to_stderr's JSON lines
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_STOP_S,
        )
        server = _Server(config, service)
        try:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(_run(server, service, listener, postscript))
        except (KeyboardInterrupt, asyncio.CancelledError):
            log.info("stopped_before_serving")
            return
        engine.count_leftovers()
        log.info("stopped", extra={"fields": {"pending": engine.report.pending}})


async def _run(
    server: uvicorn.Server,
    service: Service,
    listener: socket.socket,
    postscript: httpx.AsyncBaseTransport,
) -> None:
    try:
        await _check_shop(service.engine)
        # uvicorn takes SIGTERM and SIGINT from here on, and raises the one that stopped it
        # again once it has shut down: let that find a handler that does nothing.
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, _stopped)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        # uvicorn exposes readiness only as a flag, so poll it
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            url = _base_url(listener)
            shop = service.engine.ledger.meta("shop")
            log.info("listening", extra={"fields": {"url": url, "shop": shop}})
            typer.echo(f"pslab serve listening on {url} for shop {shop} (Ctrl-C stops it)")
        await serving
        if not server.started:
            raise SyncError("the server did not start; its log above says why")
    finally:
        await postscript.aclose()


async def _check_shop(engine: Engine) -> None:
    """`GET /me` before anything is stored; a SIGTERM meanwhile stops the start (Ctrl-C too)."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None, "called from a task"
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await engine.check_shop()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the service the moment a stop is asked for."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self._service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._service.stop_accepting()
        if not self.should_exit:
            log.info("stopping", extra={"fields": {"signal": signal.Signals(sig).name}})
        super().handle_exit(sig, frame)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """The signal that stopped uvicorn, raised again once it has shut down: nothing to do."""


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so that a port in use stops the start before the state file is touched."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port} ({error.strerror or error}); pass another --port")


def _base_url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _warn_if_on_command_line(ctx: typer.Context, parameter: str, warning: str) -> None:
    source = ctx.get_parameter_source(parameter)
    if source is not None and source.name == "COMMANDLINE":
        print(f"pslab serve: warning: {warning}", file=sys.stderr)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab serve: {message}", file=sys.stderr)
    raise typer.Exit(code)
