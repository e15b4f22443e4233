"""`pslab serve --shops FILE`: many shops in one process (docs/design/service.md#many-shops).

Each shop of the file gets its own engine over `<state-dir>/<name>.sqlite`, its own
credentials and its own drain, paced by its own key; `sync.service.shops` serves them
all under `/shops/<name>/`. A start checks every shop's key before answering anything,
and a start refused for any shop stops for all of them, naming the shop (never its key)
and removing the state files it created.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import httpx
import typer
from stamina.instrumentation import set_on_retry_hooks

from postscript_audience_lab.httpguard import (
    ConnectionLimits,
    GuardCounts,
    raise_open_file_limit,
)
from postscript_audience_lab.sync.commands.options import given_on_command_line, region_code
from postscript_audience_lab.sync.commands.serving import (
    Bodies,
    Front,
    fail,
    listen,
    run_server,
    stoppable,
    warn_if_open,
)
from postscript_audience_lab.sync.commands.shops_file import ShopEntry, ShopsFileError, read_shops
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import AuthenticationError, SyncError
from postscript_audience_lab.sync.ledger import remove_state
from postscript_audience_lab.sync.service.app import BodyBudget, Service
from postscript_audience_lab.sync.service.logs import log_to_stderr
from postscript_audience_lab.sync.service.metrics import ServiceMetrics
from postscript_audience_lab.sync.service.shops import Shops
from postscript_audience_lab.sync.settings import Settings

__all__ = ["serve_shops"]

log = logging.getLogger("pslab.serve")

# What names one shop, and so means nothing with --shops (each shop's is in the shops file).
SINGLE_SHOP_OPTIONS = {
    "state": "--state",
    "secret_key_option": "--secret-key",
    "secret_key_file": "--secret-key-file",
    "write_key": "--write-key",
    "shared_secret": "--shared-secret",
    "webhook_url": "--webhook-url",
}


class ShopsRefused(SyncError):
    """The start's check refused one shop or more: nothing is served."""


def serve_shops(
    ctx: typer.Context,
    shops_file: Path,
    state_dir: Path,
    *,
    host: str,
    port: int,
    base_url: str,
    rate_limit: float,
    no_events: bool,
    default_region: str,
    timeout: float,
    keep_rejections: int,
    keep_rejection_bytes: int,
    insecure: bool,
    drain: bool,
    bodies: Bodies,
    max_connections: int,
    parked_retry_s: float,
) -> None:
    """`pslab serve --shops FILE` (the options are `serve_command`'s), until stopped."""
    for parameter, flag in SINGLE_SHOP_OPTIONS.items():
        if given_on_command_line(ctx, parameter):
            fail(f"{flag} is for one shop; with --shops each shop's is in the shops file", code=2)
    try:
        shops = read_shops(shops_file, insecure=insecure)
        region = region_code(default_region)
    except (ShopsFileError, ValueError) as exc:
        fail(str(exc), code=2)
    if not state_dir.is_dir():
        fail(f"--state-dir {state_dir} is not a folder; create it or pass another", code=2)
    template = Settings(
        secret_key="",
        state_path=state_dir,
        base_url=base_url,
        rate_limit=rate_limit,
        post_events=not no_events,
        default_region=region,
        timeout_s=timeout,
        retry_forever=True,
        keep_rejections=keep_rejections,
        keep_rejection_bytes=keep_rejection_bytes,
    )
    warn_if_open(all(shop.credentials.required for shop in shops), host, port)
    log_to_stderr()
    limits = raise_open_file_limit(ConnectionLimits(max_connections=max_connections))
    listener = listen(host, port)
    paths = {shop.name: state_dir / f"{shop.name}.sqlite" for shop in shops}
    fresh = [path for path in paths.values() if not path.exists()]
    serving = [False]  # set once requests are answered
    try:
        _serve(shops, paths, template, listener, limits, serving, drain, bodies, parked_retry_s)
    except SyncError as exc:
        fail(str(exc))
    except sqlite3.DatabaseError as exc:
        fail(f"a state file in {state_dir} is not a usable pslab state file ({exc})")
    except OSError as exc:
        fail(f"{exc.filename or state_dir}: {exc.strerror or exc}")
    finally:
        listener.close()
        if not serving[0]:  # refused or stopped before any request: leave the folder as it was
            for path in fresh:
                remove_state(path)


def _serve(
    shops: list[ShopEntry],
    paths: dict[str, Path],
    template: Settings,
    listener: socket.socket,
    limits: ConnectionLimits,
    serving: list[bool],
    drain: bool,
    bodies: Bodies,
    parked_retry_s: float,
) -> None:
    connections = GuardCounts()
    postscript = httpx.AsyncHTTPTransport()  # one connection pool; each shop meters its calls
    budget = BodyBudget(max(bodies.inflight, bodies.largest))  # one memory bound for all
    with ExitStack() as engines:
        services: dict[str, Service] = {}
        for shop in shops:
            settings = replace(template, secret_key=shop.secret_key, state_path=paths[shop.name])
            metrics = ServiceMetrics()
            engine = engines.enter_context(Engine(settings, metrics.meter(postscript)))
            services[shop.name] = Service(
                engine,
                shop.credentials,
                metrics=metrics,
                drain=drain,
                max_body_bytes=bodies.largest,
                connections=connections,
                parked_retry_s=parked_retry_s,
                bodies=budget,
            )
        front = Shops(services, connections=connections)
        set_on_retry_hooks([front.on_retry])

        async def prepare() -> None:
            refused = await stoppable(front.check_keys())
            if refused:
                raise ShopsRefused("; ".join(_refusal(name, why) for name, why in refused.items()))

        def announce(url: str) -> None:
            serving[0] = True
            names = list(services)
            log.info("listening", extra={"fields": {"url": url, "shops": names}})
            typer.echo(
                f"pslab serve listening on {url} for shops {', '.join(names)} (Ctrl-C stops it)"
            )

        running = Front(front.app, front.stop_accepting, prepare, announce)
        if not run_server(running, listener, limits, connections, postscript):
            return
        for name, service in services.items():
            service.engine.count_leftovers()
            fields = {"shop": name, "pending": service.engine.report.pending}
            log.info("stopped", extra={"fields": fields})


def _refusal(shop: str, why: Exception) -> str:
    """Why the start refused `shop`, in words that hold no key."""
    if isinstance(why, AuthenticationError):
        return f"Postscript refused shop {shop}'s secret key (HTTP {why.status}); check that key"
    if isinstance(why, SyncError):
        return f"shop {shop}: {why}"
    return f"shop {shop}: {type(why).__name__}"
