"""`pslab contracts`: list, verify, record and drift.

Exit codes: 0 all good; 1 some contract differs (or the emulator target is
unusable); 3 a live mode lacks POSTSCRIPT_SECRET_KEY / POSTSCRIPT_TEST_PHONE,
or the live target refuses them or cannot be reached.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import httpx
import typer

from postscript_audience_lab.contracts.contract import RECORDED, Contract, load_contracts
from postscript_audience_lab.contracts.drift import drift
from postscript_audience_lab.contracts.record import UnsafeRecording, record
from postscript_audience_lab.contracts.target import EmulatorTarget, LiveTarget, TargetError
from postscript_audience_lab.contracts.verify import (
    ContractResult,
    summary,
    verify_emulator,
    verify_target,
)
from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY

__all__ = ["EXIT_DIFFERENCES", "EXIT_MISSING_LIVE_SETTINGS", "app"]

LIVE_BASE_URL = "https://api.postscript.io"
EXIT_DIFFERENCES = 1
EXIT_MISSING_LIVE_SETTINGS = 3
LIVE_VARIABLES = ("POSTSCRIPT_SECRET_KEY", "POSTSCRIPT_TEST_PHONE")

app = typer.Typer(
    help="Recorded Postscript interactions: list, verify a target, record a live shop, drift.",
    no_args_is_help=True,
)

Folder = Annotated[Path, typer.Option(help="Folder of contract files.", show_default=False)]
BaseUrl = Annotated[
    str | None, typer.Option(help="Target base URL (default: in-process emulator).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")]
AllowFlowEvents = Annotated[
    bool,
    typer.Option(
        help="Post events with their real type live (it may start an SMS flow); "
        "by default a type that starts no flow is sent instead."
    ),
]


@dataclass(frozen=True)
class LiveSettings:
    secret_key: str
    test_phone: str


def live_settings(secret_key: str | None = None) -> LiveSettings:
    """The key and test phone for a live run, or exit 3 naming what to set."""
    key = secret_key or os.environ.get("POSTSCRIPT_SECRET_KEY", "")
    phone = os.environ.get("POSTSCRIPT_TEST_PHONE", "")
    missing = [
        name for name, value in zip(LIVE_VARIABLES, (key, phone), strict=True) if not value.strip()
    ]
    if missing:
        typer.echo(
            f"Live contracts need {' and '.join(missing)}: set "
            f"{'them' if len(missing) > 1 else 'it'} to a shop's secret key and the phone of a "
            "test subscriber you own.",
            err=True,
        )
        raise typer.Exit(EXIT_MISSING_LIVE_SETTINGS)
    return LiveSettings(key.strip(), phone.strip())


@contextmanager
def target_errors(exit_code: int) -> Iterator[None]:
    """Turn an unusable target into one line on stderr and `exit_code`."""
    try:
        yield
    except TargetError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(exit_code) from None
    except httpx.TransportError as error:
        typer.echo(
            f"error: could not reach the target ({type(error).__name__}); check --base-url "
            "and that it is running",
            err=True,
        )
        raise typer.Exit(exit_code) from None


@asynccontextmanager
async def http_client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0)) as client:
        yield client


def print_results(results: Sequence[ContractResult], as_json: bool) -> None:
    if as_json:
        doc = {"summary": summary(results), "contracts": [r.to_json() for r in results]}
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    for result in results:
        for line in result.lines():
            typer.echo(line)
    typer.echo(summary(results))


async def run_live(
    contracts: Sequence[Contract], base_url: str, settings: LiveSettings, allow_flow_events: bool
) -> list[ContractResult]:
    async with http_client(base_url) as client:
        target = LiveTarget(
            client, settings.secret_key, settings.test_phone, allow_flow_events=allow_flow_events
        )
        return await verify_target(contracts, target)


async def run_emulator(
    contracts: Sequence[Contract], base_url: str | None, secret_key: str | None
) -> list[ContractResult]:
    if base_url is None:
        return await verify_emulator(contracts, secret_key=secret_key)
    async with http_client(base_url) as client:
        return await verify_target(
            contracts, EmulatorTarget(client, secret_key or DEFAULT_SECRET_KEY)
        )


def behaviour_of(contract: Contract) -> str:
    """`documented`, or `choice <id>` for an answer that follows a choice of
    docs/design/emulator-choices.md."""
    if contract.documented:
        return "documented"
    return f"choice {contract.behaviour}" if contract.behaviour else "unstated"


@app.command("list")
def list_contracts(folder: Folder = RECORDED) -> None:
    """Show every contract: name, request, recorded status, whose behaviour it pins, provenance.

    The fourth column says whether Postscript's docs state the answer (`documented`)
    or it follows a choice of the emulator (`choice <id>`, docs/design/emulator-choices.md).
    """
    for contract in load_contracts(folder):
        source = contract.provenance.get("source", "?")
        where = contract.provenance.get("page") or contract.provenance.get("recorded_at", "")
        request = f"{contract.request.method} {contract.request.path}"
        answer = f"{contract.response.status}  {behaviour_of(contract):28}"
        typer.echo(f"{contract.name:38} {request:50} {answer} {source} {where}")


@app.command()
def verify(
    ctx: typer.Context,
    base_url: BaseUrl = None,
    secret_key: Annotated[
        str | None, typer.Option(help="Key the target accepts (emulator default: sk_test_pslab).")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            help="Treat the target as a live shop (default https://api.postscript.io): no admin "
            "surface, only the POSTSCRIPT_TEST_PHONE subscriber is touched."
        ),
    ] = False,
    allow_flow_events: AllowFlowEvents = False,
    folder: Folder = RECORDED,
    as_json: AsJson = False,
) -> None:
    """Send each contract's request to a target and report every difference.

    On an emulator, each contract resets it and seeds its state; faults are restored after.
    """
    contracts = load_contracts(folder)
    source = ctx.get_parameter_source("secret_key")
    if live and source is not None and source.name == "COMMANDLINE":
        typer.echo(
            "warning: a key given with --secret-key is visible to every user of this machine"
            " (process list, shell history); prefer POSTSCRIPT_SECRET_KEY",
            err=True,
        )
    with target_errors(EXIT_MISSING_LIVE_SETTINGS if live else EXIT_DIFFERENCES):
        if live:
            settings = live_settings(secret_key)
            results = anyio.run(
                run_live, contracts, base_url or LIVE_BASE_URL, settings, allow_flow_events
            )
        else:
            results = anyio.run(run_emulator, contracts, base_url, secret_key)
    print_results(results, as_json)
    if any(r.failed for r in results):
        raise typer.Exit(EXIT_DIFFERENCES)


@app.command("record")
def record_command(
    base_url: Annotated[
        str, typer.Option(help="The live shop's API (or an emulator standing in for one).")
    ] = LIVE_BASE_URL,
    allow_flow_events: AllowFlowEvents = False,
    folder: Folder = RECORDED,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the files (default: over --folder).")
    ] = None,
) -> None:
    """Run the contracts against a live shop and rewrite the files, scrubbed."""
    settings = live_settings()
    contracts = load_contracts(folder)

    async def run() -> None:
        async with http_client(base_url) as client:
            target = LiveTarget(
                client,
                settings.secret_key,
                settings.test_phone,
                allow_flow_events=allow_flow_events,
            )
            for result in await record(contracts, target, out or folder):
                typer.echo(result.line())

    try:
        with target_errors(EXIT_MISSING_LIVE_SETTINGS):
            anyio.run(run)
    except UnsafeRecording as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_DIFFERENCES) from None


@app.command("drift")
def drift_command(
    base_url: Annotated[str, typer.Option(help="The live shop's API.")] = LIVE_BASE_URL,
    allow_flow_events: AllowFlowEvents = False,
    folder: Folder = RECORDED,
    as_json: AsJson = False,
) -> None:
    """One report of where the in-process emulator and a live shop answer differently."""
    settings = live_settings()
    contracts = load_contracts(folder)
    with target_errors(EXIT_MISSING_LIVE_SETTINGS):
        emulator_results = anyio.run(run_emulator, contracts, None, None)
        live_results = anyio.run(run_live, contracts, base_url, settings, allow_flow_events)
    entries = drift(contracts, emulator_results, live_results)
    if as_json:
        typer.echo(json.dumps({"contracts": [e.to_json() for e in entries]}, indent=2, default=str))
    else:
        for entry in entries:
            for line in entry.lines():
                typer.echo(line)
        disagree = sum(e.outcome == "disagree" for e in entries)
        typer.echo(f"{disagree} of {len(entries)} contracts disagree between emulator and live")
    if any(e.outcome == "disagree" for e in entries):
        raise typer.Exit(EXIT_DIFFERENCES)
