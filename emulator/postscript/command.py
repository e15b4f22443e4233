"""`pslab emulator`: serve the Postscript emulator until interrupted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from postscript_audience_lab.emulator.postscript import json_body
from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY, EmulatorConfig
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.errors import InvalidInput
from postscript_audience_lab.emulator.postscript.model import seed
from postscript_audience_lab.emulator.postscript.model.delivery import DEFAULT_RETRY_DELAYS_S
from postscript_audience_lab.emulator.postscript.model.shops import Tenancy, parse_tenancy
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.web.faults import MAX_RATE_LIMIT_RPS
from postscript_audience_lab.emulator.postscript.web.inbox import UI
from postscript_audience_lab.emulator.postscript.web.serve import serve_forever

__all__ = ["emulator_command"]


def _seed(emulator: Emulator, path: Path) -> int:
    try:
        body = json_body.parse_object(path.read_bytes())
        drafts = seed.seed_subscribers(body, emulator.config.default_region)
        shop = seed.seed_shop(body) or emulator.tenancy.default_shop.id
        if emulator.tenancy.shop(shop) is None:
            raise typer.BadParameter(
                f"cannot load {path}: it names shop {shop!r}, which --shops does not hold",
                param_hint="--seed",
            )
        return len(emulator.store_of(shop).create(drafts))
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read {path}: {error.strerror}", param_hint="--seed"
        ) from None
    except InvalidInput as error:
        first = error.problems[0]
        where = ".".join(map(str, first["loc"][1:]))  # drop the leading "body"
        if first["type"] == "value_error.duplicate":
            advice = "the --state file may hold it already; drop --seed or use a new --state"
        else:
            advice = 'it must look like {"subscribers": [{"phone_number": "+15555550100"}]}'
        raise typer.BadParameter(
            f"cannot load {path} ({where}: {first['msg']}); {advice}", param_hint="--seed"
        ) from None


def _tenancy(path: Path | None) -> Tenancy | None:
    if path is None:
        return None
    try:
        return parse_tenancy(json_body.parse_object(path.read_bytes()))
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read {path}: {error.strerror}", param_hint="--shops"
        ) from None
    except InvalidInput as error:
        first = error.problems[0]
        where = ".".join(map(str, first["loc"][1:])) or "the body"
        raise typer.BadParameter(
            f"cannot load {path} ({where}: {first['msg']}); it must look like "
            '{"shops": [{"id": "shop_a", "secret_key": "sk_a"}], "partners": []}',
            param_hint="--shops",
        ) from None


def _delays(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        delays = (-1.0,)
    if not all(0 <= d <= MAX_RETRY_DELAY_S for d in delays):
        raise typer.BadParameter(
            f"give seconds from 0 to {MAX_RETRY_DELAY_S:g}, comma-separated, e.g. 0.5,1,2",
            param_hint="--webhook-retry-delays",
        )
    return delays


MAX_RETRY_DELAY_S = 3600.0
DEFAULT_DELAYS_TEXT = ",".join(f"{delay:g}" for delay in DEFAULT_RETRY_DELAYS_S)


def emulator_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8787,
    secret_key: Annotated[
        str,
        typer.Option(
            envvar="PSLAB_EMULATOR_SECRET_KEY",
            help="The API key clients must send (Bearer, or Basic with the key as user).",
            show_default=True,
        ),
    ] = DEFAULT_SECRET_KEY,
    rate_limit: Annotated[
        float,
        typer.Option(
            help="Requests per second per key before 429s (0 = no limit).",
            min=0,
            max=MAX_RATE_LIMIT_RPS,
        ),
    ] = 15.0,
    seed: Annotated[
        Path | None,
        typer.Option(help="Subscribers to load at start: the body of POST /_emulator/subscribers."),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="SQLite file that keeps subscribers and events across restarts."),
    ] = None,
    shops: Annotated[
        Path | None,
        typer.Option(
            help="Shops and partners to serve: the body of PUT /_emulator/shops "
            "(takes the place of --secret-key's shop and the default partner)."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            help="Also refuse what Postscript may accept: unknown query parameters and body "
            "fields, undocumented property value types (docs/design/emulator-choices.md)."
        ),
    ] = False,
    webhook_retry_delays: Annotated[
        str,
        typer.Option(
            help="Seconds between a failing webhook delivery's attempts, comma-separated "
            "('' = one attempt; the default is Postscript's, on the emulator's clock).",
        ),
    ] = DEFAULT_DELAYS_TEXT,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the ready line and the final summary as JSON objects."),
    ] = False,
) -> None:
    """Serve the Postscript API emulator (and its /_emulator admin surface) until interrupted."""
    config = EmulatorConfig(
        secret_key=secret_key,
        rate_limit_rps=rate_limit,
        state_path=state,
        strict=strict,
        tenancy=_tenancy(shops),
        webhook_retry_delays=_delays(webhook_retry_delays),
    )
    try:
        app = create_app(config)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--state") from None
    emulator: Emulator = app.state.emulator
    seeded = _seed(emulator, seed) if seed is not None else 0

    def announce(base_url: str) -> None:
        ready = {
            "url": base_url,
            "subscribers": len(emulator.store),
            "seeded": seeded,
            "rate_limit_rps": rate_limit,
            "state": str(state) if state else None,
            "shops": [shop.id for shop in emulator.tenancy.shops],
            "strict": strict,
            "inbox": base_url + UI,
        }
        # click.echo flushes, so a parent process reading our stdout sees the line at once
        if as_json:
            typer.echo(json.dumps(ready))
        else:
            typer.echo(f"Postscript emulator listening on {base_url} (Ctrl-C stops it)")
            typer.echo(f"Web inbox: {base_url}{UI}")

    try:
        serve_forever(app, host, port, announce)
    except RuntimeError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from None
    summary = {
        "api_requests": emulator.journal.total,
        "subscribers": len(emulator.store),
        "events": len(emulator.store.events()),
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"Stopped after {summary['api_requests']:,} API requests; "
            f"{summary['subscribers']:,} subscribers, {summary['events']:,} events held."
        )
