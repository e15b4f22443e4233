"""`pslab serve`: the engine as a service, until SIGTERM or Ctrl-C (docs/design/service.md).

The order of a start is chosen so that a refusal changes nothing: the port is
bound (a taken port fails at once), the state file locked, the shop checked
with `GET /me`, and only then are requests answered. A stop (SIGTERM, SIGINT)
answers 503 to new requests, lets the ones in flight finish (each is committed
before its 200), cancels the drain (a write in flight stays journaled, design
docs/design/convergence.md#nothing-lost) and exits 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import sqlite3
import sys
from types import FrameType
from typing import Annotated, NamedTuple, NoReturn

import httpx
import typer
import uvicorn
from stamina.instrumentation import set_on_retry_hooks

from postscript_audience_lab.httpguard import (
    ConnectionLimits,
    GuardCounts,
    guarded_h11,
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

GRACEFUL_STOP_S = 5  # requests in flight get this long to finish once a stop is asked for


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
) -> None:
    """Take Segment's events over HTTP and drain them into Postscript, until stopped."""
    try:
        settings = engine_settings(
            ctx,
            key_parameter="secret_key_option",
            given_key=secret_key_option,
            key_file=secret_key_file,
            warn=_warn,
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
        _fail(str(exc), code=2)
    credentials = _credentials(ctx, write_key, shared_secret, insecure=insecure_no_auth)
    if not credentials.required and not _is_loopback(host):
        _warn(
            f"serving without credentials on {host}: anyone who can reach port {port} can post "
            "events that change Postscript; --insecure-no-auth is meant for loopback tests"
        )
    log_to_stderr()
    limits = raise_open_file_limit(ConnectionLimits(max_connections=max_connections))
    bodies = _Bodies(max_body_bytes, max_inflight_bytes)
    listener = _listen(host, port)
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
        _fail(f"Postscript refused the secret key (HTTP {exc.status}); check the key")
    except SyncError as exc:
        _fail(str(exc))
    except sqlite3.DatabaseError as exc:
        _fail(f"{state} is not a usable pslab state file ({exc}); pass another --state")
    except OSError as exc:
        _fail(f"{exc.filename or state}: {exc.strerror or exc}")
    finally:
        listener.close()


def _is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) can only be reached from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


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


class _Bodies(NamedTuple):
    largest: int  # one request's body
    inflight: int  # all bodies being read at once


def _serve(
    settings: Settings,
    credentials: Credentials,
    listener: socket.socket,
    *,
    drain: bool,
    bodies: _Bodies,
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
        config = uvicorn.Config(
            service.app,
            log_config=None,  # uvicorn's records go through log_to_stderr's JSON lines
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_STOP_S,
            timeout_keep_alive=int(limits.keep_alive_s),
            # h11 (whatever else is installed) drops a connection whose request head grows
            # past 16 KiB, where httptools would buffer a header of any size; the guard adds
            # head and body deadlines and a connection limit (docs/design/service.md).
            http=guarded_h11(limits, connections),
        )
        server = _Server(config, service)
        try:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(_run(server, service, listener, postscript, webhook_url))
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
    webhook_url: str | None,
) -> None:
    try:
        await _check_shop(service.engine)
        if webhook_url is not None:
            service.webhook_token = await _subscribe_to_opt_ins(service.engine, webhook_url)
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


async def _subscribe_to_opt_ins(engine: Engine, webhook_url: str) -> str:
    """Subscribe `webhook_url` to Postscript's opt-ins; a refusal stops the start, saying why."""
    try:
        return await engine.subscribe_to_opt_ins(webhook_url)
    except BadRequestError as refused:
        raise SyncError(
            f"Postscript refused --webhook-url {webhook_url!r} ({refused.message}); it must be"
            f" the https:// URL of this service's {WEBHOOK_ROUTE}"
        ) from None


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
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port} ({error.strerror or error}); pass another --port")
    # Nagle's algorithm off here and in every accepted connection: asyncio does it only for a
    # socket whose protocol number is TCP, which create_server's is not, and an answer would
    # otherwise wait ~40 ms for the sender's delayed ACK (uvloop, when installed, did it).
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


def _base_url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _warn_if_on_command_line(ctx: typer.Context, parameter: str, warning: str) -> None:
    if given_on_command_line(ctx, parameter):
        _warn(warning)


def _warn(message: str) -> None:
    print(f"pslab serve: warning: {message}", file=sys.stderr)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab serve: {message}", file=sys.stderr)
    raise typer.Exit(code)
