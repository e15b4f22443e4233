"""The options `pslab sync`, `pslab serve` and `pslab reconcile` share, each said once.

Typer reads an option's flag, help and bounds from its parameter's `Annotated`
type, so a shared option is a shared type here; each command keeps its own
default (`= 15.0`) and its own wording where the meaning differs (what
`--rejects-out` holds, for one). The key's sources and their order are in
`sync.commands.keys` (docs/design/commands.md).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, TextIO

import phonenumbers
import typer

from postscript_audience_lab.sync.commands.keys import (
    COMMAND_LINE_WARNING,
    KeySourceError,
    secret_key,
)
from postscript_audience_lab.sync.errors import AuthenticationError, PostscriptError, SyncError
from postscript_audience_lab.sync.ledger import (
    KEEP_REJECTION_BYTES,
    KEEP_REJECTIONS,
    PRIVATE_FILE_MODE,
)
from postscript_audience_lab.sync.settings import Settings

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_STATE",
    "RUN_FAILURES",
    "AsJson",
    "BaseUrl",
    "DefaultRegion",
    "KeepRejectionBytes",
    "KeepRejections",
    "LookupBatch",
    "NoEvents",
    "RateLimit",
    "SecretKey",
    "SecretKeyFile",
    "State",
    "Timeout",
    "UsageError",
    "engine_settings",
    "failure",
    "given_on_command_line",
    "open_output",
    "region_code",
]

DEFAULT_BASE_URL = "https://api.postscript.io"
DEFAULT_STATE = Path("pslab-state.sqlite")

BaseUrl = Annotated[
    str, typer.Option("--base-url", help="Postscript API base URL (the emulator's, in the lab).")
]
SecretKey = Annotated[
    str | None,
    typer.Option(
        "--secret-key",
        envvar="POSTSCRIPT_SECRET_KEY",
        help="Postscript secret API key. Prefer POSTSCRIPT_SECRET_KEY or --secret-key-file:"
        " a value given here is visible to every user of the machine.",
        show_default=False,
    ),
]
SecretKeyFile = Annotated[
    Path | None,
    typer.Option("--secret-key-file", help="Read the secret key from this file (its first line)."),
]
State = Annotated[
    Path,
    typer.Option(
        "--state",
        help="SQLite state file; keep it between runs (pslab sync, serve and reconcile share it).",
    ),
]
RateLimit = Annotated[
    float,
    typer.Option(
        "--rate-limit", min=0.0, help="Requests per second to stay under; 0 turns pacing off."
    ),
]
NoEvents = Annotated[
    bool, typer.Option("--no-events", help="Update the list only; post no custom events.")
]
DefaultRegion = Annotated[
    str,
    typer.Option(
        "--default-region", help="Region for phone numbers written without a country code."
    ),
]
LookupBatch = Annotated[
    int, typer.Option("--lookup-batch", min=1, max=50, help="Identities per bulk lookup call.")
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Seconds before one Postscript request times out."),
]
KeepRejections = Annotated[
    int,
    typer.Option(
        "--keep-rejections",
        min=0,
        help="Rejected events the state file keeps, the latest; older ones are dropped "
        "(and counted).",
    ),
]
KeepRejectionBytes = Annotated[
    int,
    typer.Option(
        "--keep-rejection-bytes",
        min=0,
        help="Bytes of rejected events' text the state file keeps, the latest; older ones "
        "are dropped (and counted).",
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the summary as one JSON object (last line).")
]


def region_code(value: str) -> str:
    """`value` as the region code phonenumbers knows (upper case); ValueError saying why not.

    An unknown region would make every phone written without a country code silently
    absent, so it stops the command before anything runs.
    """
    code = value.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"--default-region {value!r} is not a region code such as US or GB")
    return code


def given_on_command_line(ctx: typer.Context, parameter: str) -> bool:
    """Whether the user typed this option (rather than the environment or a default)."""
    source = ctx.get_parameter_source(parameter)
    return source is not None and source.name == "COMMANDLINE"


class UsageError(Exception):
    """An option a command cannot run with; the message says which and what to do (exit 2)."""


def open_output(stack: ExitStack, path: Path | None, option: str) -> TextIO | None:
    """Open an output file now, so that a path that cannot be written stops the run first."""
    if path is None:
        return None
    try:
        # What is written here names people (rejected events): readable by its owner only.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        return stack.enter_context(os.fdopen(descriptor, "w", encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot write {option} {path}: {exc.strerror or exc}") from None


def engine_settings(
    ctx: typer.Context,
    *,
    key_parameter: str,
    given_key: str | None,
    key_file: Path | None,
    warn: Callable[[str], None],
    base_url: str,
    state: Path,
    rate_limit: float,
    no_events: bool,
    default_region: str,
    timeout: float,
    lookup_batch: int = 50,
    dry_run: bool = False,
    retry_forever: bool = False,
    keep_rejections: int = KEEP_REJECTIONS,
    keep_rejection_bytes: int = KEEP_REJECTION_BYTES,
) -> Settings:
    """The engine's settings from the options the commands share; `UsageError` saying why not.

    The key comes from `key_file`, else the environment or the flag (`sync.commands.keys`); one
    typed on the command line (the option `key_parameter`) works, and `warn` is told why
    it should not be.
    """
    try:
        key = secret_key(given_key, key_file)
    except KeySourceError as exc:
        raise UsageError(str(exc)) from None
    if key_file is None and given_on_command_line(ctx, key_parameter):
        warn(COMMAND_LINE_WARNING)
    try:
        region = region_code(default_region)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Settings(
        base_url=base_url,
        secret_key=key,
        state_path=state,
        rate_limit=rate_limit,
        post_events=not no_events,
        default_region=region,
        lookup_batch=lookup_batch,
        timeout_s=timeout,
        dry_run=dry_run,
        retry_forever=retry_forever,
        keep_rejections=keep_rejections,
        keep_rejection_bytes=keep_rejection_bytes,
    )


# What a run that meets one of these stops with: `failure` says it in one line.
RUN_FAILURES = (SyncError, sqlite3.DatabaseError, OSError, KeyboardInterrupt)


def failure(exc: BaseException, *, state: Path, reading: str | Path) -> tuple[str, int]:
    """The one line and exit status a run stopped by `exc` ends with (one of `RUN_FAILURES`).

    Each says what to do next; a fault that a rerun resumes from says so. `reading` is
    the file an `OSError` without a file name is about.
    """
    if isinstance(exc, AuthenticationError):
        return f"Postscript refused the secret key (HTTP {exc.status}); check the key", 1
    if isinstance(exc, PostscriptError):
        return f"{exc}; run again with the same --state to resume", 1
    if isinstance(exc, SyncError):
        return str(exc), 1
    if isinstance(exc, sqlite3.DatabaseError):
        return f"{state} is not a usable pslab state file ({exc}); pass another --state", 1
    if isinstance(exc, OSError):
        return f"{exc.filename or reading}: {exc.strerror or exc}", 1
    return "interrupted; run again with the same --state to resume", 130
