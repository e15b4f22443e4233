"""`pslab serve`: the engine as a service, until SIGTERM or Ctrl-C (docs/design/service.md).

The order of a start is chosen so that a refusal changes nothing: the port is
bound (a taken port fails at once), the state file locked, the shop checked
with `GET /me`, and only then are requests answered. A stop (SIGTERM, SIGINT)
answers 503 to new requests, lets the ones in flight finish (each is committed
before its 200), cancels the drain (a write in flight stays journaled, design
docs/design/convergence.md#nothing-lost) and exits 0.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from pathlib import Path
from typing import Annotated

import httpx
import typer
from stamina.instrumentation import set_on_retry_hooks

from postscript_audience_lab.httpguard import (
    ConnectionLimits,
    GuardCounts,
    raise_open_file_limit,
)
from postscript_audience_lab.sync.commands.options import (
    DEFAULT_BASE_URL,
    DEFAULT_STATE,
    BaseUrl,
    DefaultRegion,
    KeepRejectionBytes,
    KeepRejections,
    NoEvents,
    RateLimit,
    SecretKey,
    SecretKeyFile,
    State,
    Timeout,
    UsageError,
    engine_settings,
    given_on_command_line,
)
from postscript_audience_lab.sync.commands.serve_shops import serve_shops
from postscript_audience_lab.sync.commands.serving import (
    Bodies,
    Front,
    fail,
    listen,
    run_server,
    stoppable,
    warn,
    warn_if_open,
)
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import AuthenticationError, BadRequestError, SyncError
from postscript_audience_lab.sync.ledger import (
    KEEP_REJECTION_BYTES,
    KEEP_REJECTIONS,
    remove_state,
)
from postscript_audience_lab.sync.service.app import WEBHOOK_ROUTE, Service
from postscript_audience_lab.sync.service.drain_loop import PARKED_RETRY_S
from postscript_audience_lab.sync.service.intake import (
    MAX_BODY_BYTES,
    MAX_INFLIGHT_BYTES,
    Credentials,
)
from postscript_audience_lab.sync.service.logs import log_to_stderr
from postscript_audience_lab.sync.service.metrics import ServiceMetrics
from postscript_audience_lab.sync.settings import Settings

__all__ = ["serve_command"]

log = logging.getLogger("pslab.serve")


def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8788,
    state: State = DEFAULT_STATE,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    secret_key_option: SecretKey = None,
    secret_key_file: SecretKeyFile = None,
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
    rate_limit: RateLimit = 15.0,
    no_drain: Annotated[
        bool,
        typer.Option("--no-drain", help="Only take events in; write nothing to Postscript."),
    ] = False,
    no_events: NoEvents = False,
    default_region: DefaultRegion = "US",
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Largest request body taken (413 beyond).")
    ] = MAX_BODY_BYTES,
    max_inflight_bytes: Annotated[
        int,
        typer.Option(
            min=1024,
            help="Bytes of request bodies read at once, all requests together (503 beyond).",
        ),
    ] = MAX_INFLIGHT_BYTES,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1,
            help="Open connections at most; one more closes the oldest still sending its head.",
        ),
    ] = ConnectionLimits.max_connections,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="This service's public URL of /postscript/webhooks: it subscribes there to"
            " Postscript's opt-ins and applies a parked change as soon as its subscriber opts in.",
            show_default=False,
        ),
    ] = None,
    parked_retry: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds between lookups of changes parked for a subscriber not yet there.",
        ),
    ] = PARKED_RETRY_S,
    timeout: Timeout = 10.0,
    keep_rejections: KeepRejections = KEEP_REJECTIONS,
    keep_rejection_bytes: KeepRejectionBytes = KEEP_REJECTION_BYTES,
    shops_file: Annotated[
        Path | None,
        typer.Option(
            "--shops",
            help="Serve many shops, each under /shops/NAME/: a TOML file with a [shops.NAME]"
            " table per shop saying where its keys are (secret_key_env, write_key_env, ...).",
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="With --shops: the folder of the shops' state files, NAME.sqlite each"
            " [default: the current folder].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Take Segment's events over HTTP and drain them into Postscript, until stopped."""
    if shops_file is not None:
        serve_shops(
            ctx,
            shops_file,
            state_dir or Path(),
            host=host,
            port=port,
            base_url=base_url,
            rate_limit=rate_limit,
            no_events=no_events,
            default_region=default_region,
            timeout=timeout,
            keep_rejections=keep_rejections,
            keep_rejection_bytes=keep_rejection_bytes,
            insecure=insecure_no_auth,
            drain=not no_drain,
            bodies=Bodies(max_body_bytes, max_inflight_bytes),
            max_connections=max_connections,
            parked_retry_s=parked_retry,
        )
        return
    if state_dir is not None:
        fail("--state-dir goes with --shops; one shop's state file is --state", code=2)
    try:
        settings = engine_settings(
            ctx,
            key_parameter="secret_key_option",
            given_key=secret_key_option,
            key_file=secret_key_file,
            warn=warn,
            base_url=base_url,
            state=state,
            rate_limit=rate_limit,
            no_events=no_events,
            default_region=default_region,
            timeout=timeout,
            keep_rejections=keep_rejections,
            keep_rejection_bytes=keep_rejection_bytes,
            retry_forever=True,
        )
    except UsageError as exc:
        fail(str(exc), code=2)
    credentials = _credentials(ctx, write_key, shared_secret, insecure=insecure_no_auth)
    warn_if_open(credentials.required, host, port)
    log_to_stderr()
    limits = raise_open_file_limit(ConnectionLimits(max_connections=max_connections))
    bodies = Bodies(max_body_bytes, max_inflight_bytes)
    listener = listen(host, port)
    fresh = not settings.state_path.exists()
    try:
        _serve(
            settings,
            credentials,
            listener,
            drain=not no_drain,
            bodies=bodies,
            limits=limits,
            parked_retry_s=parked_retry,
            webhook_url=webhook_url,
        )
    except AuthenticationError as exc:  # raised by the start's GET /me: nothing was stored
        if fresh:
            remove_state(settings.state_path)
        fail(f"Postscript refused the secret key (HTTP {exc.status}); check the key")
    except SyncError as exc:
        fail(str(exc))
    except sqlite3.DatabaseError as exc:
        fail(f"{state} is not a usable pslab state file ({exc}); pass another --state")
    except OSError as exc:
        fail(f"{exc.filename or state}: {exc.strerror or exc}")
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
        fail(
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
    bodies: Bodies,
    limits: ConnectionLimits,
    parked_retry_s: float,
    webhook_url: str | None,
) -> None:
    metrics = ServiceMetrics()
    connections = GuardCounts()
    postscript = httpx.AsyncHTTPTransport()
    with Engine(settings, metrics.meter(postscript)) as engine:
        service = Service(
            engine,
            credentials,
            metrics=metrics,
            drain=drain,
            max_body_bytes=bodies.largest,
            max_inflight_bytes=bodies.inflight,
            connections=connections,
            parked_retry_s=parked_retry_s,
        )
        set_on_retry_hooks([service.on_retry])

        async def prepare() -> None:
            await stoppable(engine.check_shop())
            if webhook_url is not None:
                service.webhook_token = await _subscribe_to_opt_ins(engine, webhook_url)

        def announce(url: str) -> None:
            shop = engine.ledger.meta("shop")
            log.info("listening", extra={"fields": {"url": url, "shop": shop}})
            typer.echo(f"pslab serve listening on {url} for shop {shop} (Ctrl-C stops it)")

        front = Front(service.app, service.stop_accepting, prepare, announce)
        if not run_server(front, listener, limits, connections, postscript):
            return
        engine.count_leftovers()
        log.info("stopped", extra={"fields": {"pending": engine.report.pending}})


async def _subscribe_to_opt_ins(engine: Engine, webhook_url: str) -> str:
    """Subscribe `webhook_url` to Postscript's opt-ins; a refusal stops the start, saying why."""
    try:
        return await engine.subscribe_to_opt_ins(webhook_url)
    except BadRequestError as refused:
        raise SyncError(
            f"Postscript refused --webhook-url {webhook_url!r} ({refused.message}); it must be"
            f" the https:// URL of this service's {WEBHOOK_ROUTE}"
        ) from None


def _warn_if_on_command_line(ctx: typer.Context, parameter: str, warning: str) -> None:
    if given_on_command_line(ctx, parameter):
        warn(warning)
