"""`pslab sync`: run the engine over NDJSON input until it is drained (docs/design/commands.md)."""

from __future__ import annotations

import io
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from postscript_audience_lab.sync.commands.options import (
    DEFAULT_BASE_URL,
    DEFAULT_STATE,
    RUN_FAILURES,
    AsJson,
    BaseUrl,
    DefaultRegion,
    KeepRejectionBytes,
    KeepRejections,
    LookupBatch,
    NoEvents,
    RateLimit,
    SecretKey,
    SecretKeyFile,
    State,
    Timeout,
    UsageError,
    engine_settings,
    failure,
    open_output,
)
from postscript_audience_lab.sync.commands.stopping import EXIT_STOPPED, GracefulStop
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.ledger import KEEP_REJECTION_BYTES, KEEP_REJECTIONS, remove_state
from postscript_audience_lab.sync.plan import Plan
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.settings import Settings
from postscript_audience_lab.sync.source import bounded_lines

__all__ = ["sync_command"]

STAGES = {"ingest": "reading events", "resolve": "finding subscribers", "write": "writing"}


def sync_command(
    ctx: typer.Context,
    input_path: Annotated[
        str,
        typer.Option("--input", "-i", help="NDJSON events (event or batch per line); - is stdin."),
    ] = "-",
    base_url: BaseUrl = DEFAULT_BASE_URL,
    secret_key: SecretKey = None,
    secret_key_file: SecretKeyFile = None,
    state: State = DEFAULT_STATE,
    rate_limit: RateLimit = 15.0,
    no_events: NoEvents = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the planned PATCHes and events; write nothing."),
    ] = False,
    default_region: DefaultRegion = "US",
    rejects_out: Annotated[
        Path | None,
        typer.Option(help="Write rejected events with their reasons here (NDJSON)."),
    ] = None,
    lookup_batch: LookupBatch = 50,
    timeout: Timeout = 10.0,
    keep_rejections: KeepRejections = KEEP_REJECTIONS,
    keep_rejection_bytes: KeepRejectionBytes = KEEP_REJECTION_BYTES,
    as_json: AsJson = False,
) -> None:
    """Sync Segment Engage audience events into Postscript subscribers, then exit."""
    try:
        settings = engine_settings(
            ctx,
            key_parameter="secret_key",
            given_key=secret_key,
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
            lookup_batch=lookup_batch,
            dry_run=dry_run,
        )
    except UsageError as exc:
        _fail(str(exc), code=2)
    err = Console(stderr=True)
    set_on_retry_hooks([_RetryNotice(err)])  # instead of stamina's default log lines
    fresh = not settings.state_path.exists()
    with ExitStack() as stack:
        try:  # before anything is stored
            rejects = open_output(stack, rejects_out, "--rejects-out")
        except UsageError as exc:
            _fail(str(exc), code=2)
        run = _Run(settings, err, show_plans=dry_run)
        try:
            run.sync(stack, input_path)
        except RUN_FAILURES as exc:
            run.fail(*failure(exc, state=state, reading=input_path))
        finally:
            if rejects is not None and run.engine is not None:
                _write_rejects(rejects, run.engine)
        assert run.engine is not None
        report = run.engine.report
        _print_summary(report, as_json)
        if run.failure is not None:
            if fresh and not run.engine.shop_checked and not dry_run:
                stack.close()  # refused before anything was stored: leave no state file
                remove_state(settings.state_path)
            _fail(*run.failure)
        if not report.drained:
            _fail(f"{report.pending} changes are still pending; run again with the same --state")


def _warn(message: str) -> None:
    print(f"pslab sync: warning: {message}", file=sys.stderr)


class _Run:
    """One `pslab sync` run: the engine it opened, and how it failed, if it did."""

    def __init__(self, settings: Settings, err: Console, *, show_plans: bool) -> None:
        self.settings = settings
        self.err = err
        self.show_plans = show_plans
        self.engine: Engine | None = None
        self.failure: tuple[str, int] | None = None

    def sync(self, stack: ExitStack, input_path: str) -> None:
        source = self._open_input(stack, input_path)
        progress = _progress_bar(self.err) if self.err.is_terminal else None
        if progress is not None:
            stack.enter_context(progress)
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if progress is None:
                return
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        on_plan = _print_plan if self.show_plans else None
        self.engine = stack.enter_context(
            Engine(self.settings, on_plan=on_plan, progress=on_progress)
        )
        if source is not None:
            anyio.run(self.engine.check_shop)  # before anything is stored in the state file
            self.engine.ingest(bounded_lines(source))
        stop = GracefulStop(self.engine)
        anyio.run(stop.run, self.engine.drain)
        if stop.asked:
            self.fail(
                "stopped by SIGTERM once the calls in flight were answered; run again with the"
                " same --state to resume",
                EXIT_STOPPED,
            )

    def _open_input(self, stack: ExitStack, input_path: str) -> TextIO | None:
        # NDJSON is UTF-8; a line with other bytes is rejected alone (`sync.parse`), not fatal
        if input_path == "-":
            if isinstance(sys.stdin, io.TextIOWrapper):  # a replaced stdin is read as it is
                sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
            source: TextIO = sys.stdin
        else:
            opened = open(input_path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
            source = stack.enter_context(opened)
        if source.isatty():  # nothing piped in: only retry parked and unfinished changes
            self.err.print("[dim]no input on stdin: draining what the state file holds[/]")
            return None
        return source

    def fail(self, message: str, code: int = 1) -> None:
        """Remember why the run failed; the summary is printed first, then the reason."""
        self.failure = (message, code)
        if self.engine is None:
            _fail(message, code)
        if self.engine.shop_checked:  # else the state file's counts belong to another shop
            self.engine.count_leftovers()


def _print_summary(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), sort_keys=True))
    else:
        Console().print(_summary(report))


class _RetryNotice:
    """On a terminal, one dim line per scheduled retry; silent otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, details: RetryDetails) -> None:
        if self.console.is_terminal:
            cause = type(details.caused_by).__name__
            self.console.print(f"[dim]retrying in {details.wait_for:.1f} s after {cause}[/]")


def _print_plan(plan: Plan) -> None:
    planned = {"subscriber_id": plan.subscriber_id, "patch": plan.patch_properties}
    print(json.dumps({**planned, "events": plan.events}, sort_keys=True))


def _write_rejects(out: TextIO, engine: Engine) -> None:
    for rejection in engine.rejections():  # ASCII-escaped: bytes that were not UTF-8 survive
        out.write(json.dumps(rejection) + "\n")


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    )


def _summary(report: Report) -> Table:
    data = report.as_dict()
    table = Table(title="pslab sync" + (" (dry run: nothing written)" if report.dry_run else ""))
    table.add_column("")
    table.add_column("count", justify="right")
    for name in (
        "received",
        "duplicates",
        "stale",
        "rejected",
        "rejections_dropped",
        "refused",
        "applied",
        "changed",
        "parked",
        "pending",
        "subscribers_patched",
        "events_posted",
        "ambiguous",
        "lower_bound",
    ):
        table.add_row(name.replace("_", " "), str(data[name]))
    for endpoint, count in data["api_calls"].items():
        table.add_row(f"api calls: {endpoint}", str(count))
    return table


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab sync: {message}", file=sys.stderr)
    raise typer.Exit(code)
