"""`pslab reconcile`: converge Postscript to a full audience snapshot (docs/design/reconcile.md).

The order is chosen so that a refusal changes nothing in Postscript: the snapshot
is read (a file that cannot be read stops here), the state file locked, the shop
checked and its subscribers listed, the plan made and the guards asked; only then
are changes stored and written, by the engine's own drain.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import anyio
import typer

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
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import SnapshotError
from postscript_audience_lab.sync.ledger import KEEP_REJECTION_BYTES, KEEP_REJECTIONS
from postscript_audience_lab.sync.parse import Rejection, format_instant
from postscript_audience_lab.sync.reconcile import (
    DEFAULT_MAX_REMOVAL_SHARE,
    SAMPLE_NAMES,
    AudiencePlan,
    Reconciliation,
    apply_reconcile,
    plan_reconcile,
    refusals,
)
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.settings import Settings
from postscript_audience_lab.sync.snapshot import Snapshot, read_snapshot

__all__ = ["parse_as_of", "parse_share", "reconcile_command"]

# A snapshot dated ahead of now would make every event until then lose to it; this much
# allows for a clock that runs a little fast, no more.
AS_OF_CLOCK_SKEW = timedelta(minutes=5)


def reconcile_command(
    ctx: typer.Context,
    snapshot_path: Annotated[
        str,
        typer.Option(
            "--snapshot",
            help="Full membership: CSV (audience_key, phone and/or email; or Engage's audience"
            " export) or NDJSON of the same; - is stdin.",
        ),
    ],
    as_of: Annotated[
        str,
        typer.Option(
            help="When the snapshot was taken (ISO 8601; UTC when no offset). Events newer"
            " than this win over it, older ones lose: when in doubt, give an earlier time.",
        ),
    ],
    audience: Annotated[
        list[str] | None,
        typer.Option(
            help="An audience the snapshot covers (repeat for several); needed for a file"
            " without an audience_key column, and to reconcile an audience to empty.",
        ),
    ] = None,
    state: State = DEFAULT_STATE,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    secret_key_option: SecretKey = None,
    secret_key_file: SecretKeyFile = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print each audience's adds and removes; write nothing."),
    ] = False,
    show: Annotated[
        int,
        typer.Option(
            min=0,
            max=SAMPLE_NAMES,
            help="With --dry-run: list this many identities of each kind.",
        ),
    ] = 10,
    max_removal_share: Annotated[
        str,
        typer.Option(
            help="Refuse to remove more than this share of an audience's current members"
            " (a truncated export looks like that); e.g. 20% or 0.2.",
        ),
    ] = f"{DEFAULT_MAX_REMOVAL_SHARE:.0%}",
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Accept a named audience the snapshot has no member of (removes everyone).",
        ),
    ] = False,
    no_events: NoEvents = False,
    rate_limit: RateLimit = 15.0,
    default_region: DefaultRegion = "US",
    rejects_out: Annotated[
        Path | None,
        typer.Option(
            help="Write every rejected row (and refused write) with its reason here, as read;"
            " the summary counts them and keeps the first 100.",
        ),
    ] = None,
    lookup_batch: LookupBatch = 50,
    timeout: Timeout = 10.0,
    keep_rejections: KeepRejections = KEEP_REJECTIONS,
    keep_rejection_bytes: KeepRejectionBytes = KEEP_REJECTION_BYTES,
    as_json: AsJson = False,
) -> None:
    """Make Postscript match a full snapshot of audiences: add the missing, remove the rest."""
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
            lookup_batch=lookup_batch,
            dry_run=dry_run,
        )
        instant = parse_as_of(as_of)
        share = parse_share(max_removal_share)
    except (UsageError, ValueError) as exc:
        _fail(str(exc), code=2)
    with ExitStack() as stack:
        try:
            rejects = open_output(stack, rejects_out, "--rejects-out")
        except UsageError as exc:
            _fail(str(exc), code=2)
        snapshot = _read(stack, snapshot_path, audience or [], settings.default_region, rejects)
        run = _Run(settings, snapshot, instant)
        try:
            run.plan(stack)
            if run.reconciliation is not None and not dry_run:
                run.apply(share, allow_empty)
        except RUN_FAILURES as exc:
            run.fail(*failure(exc, state=state, reading=state))
        finally:
            if rejects is not None and run.applied and run.engine is not None:
                _write_refused(rejects, run.engine)
        if run.reconciliation is None:
            _fail(*(run.failure or ("nothing was planned", 1)))
        reconciliation = run.reconciliation
        if dry_run and run.failure is None:
            refused = refusals(reconciliation, max_removal_share=share, allow_empty=allow_empty)
            if refused:
                run.failure = ("; ".join(refused) + ". (dry run: nothing was written)", 1)
        _print_result(run, show if dry_run else 0, as_json)
        if run.failure is not None:
            _fail(*run.failure)
        if run.report is not None and not run.report.drained:
            _fail(
                f"{run.report.pending} changes are still pending; "
                "run pslab sync or this command again with the same --state"
            )


def parse_as_of(text: str, now: datetime | None = None) -> datetime:
    """`--as-of`: an ISO 8601 instant (UTC when it has no offset), not in the future."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--as-of {text!r} is not an ISO 8601 time such as 2026-11-28T09:00:00Z"
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    instant = instant.astimezone(UTC)
    latest = (now or datetime.now(UTC)) + AS_OF_CLOCK_SKEW
    if instant > latest:
        raise ValueError(
            f"--as-of {text!r} is in the future; give the time the export was made "
            "(a later one would override the events that came after it)"
        )
    return instant


def parse_share(text: str) -> float:
    """`--max-removal-share`: `20%` or `0.2`, from 0 to 100%."""
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ValueError(
            f"--max-removal-share {text!r} is not a share from 0% to 100%; write e.g. 20% or 0.2"
        )
    return share


class _Run:
    """One `pslab reconcile`: the engine, the plan, the report, and how it failed."""

    def __init__(self, settings: Settings, snapshot: Snapshot, as_of: datetime) -> None:
        self.settings = settings
        self.snapshot = snapshot
        self.as_of = as_of
        self.engine: Engine | None = None
        self.reconciliation: Reconciliation | None = None
        self.report: Report | None = None
        self.failure: tuple[str, int] | None = None
        self.applied = False

    def plan(self, stack: ExitStack) -> None:
        self.engine = stack.enter_context(Engine(self.settings))
        engine = self.engine

        async def plan() -> Reconciliation:
            return await plan_reconcile(engine, self.snapshot, self.as_of, announce=_note)

        self.reconciliation = anyio.run(plan)
        stack.callback(self.reconciliation.changes.close)
        if not self.settings.dry_run:
            cost = self.reconciliation.cost(self.settings.lookup_batch, self.settings.post_events)
            _note(
                f"then, unless a guard refuses: about {_count(cost['lookups'], 'lookup')}, "
                f"{_count(cost['patches'], 'PATCH')} and {_count(cost['events'], 'event')}"
            )

    def apply(self, share: float, allow_empty: bool) -> None:
        assert self.engine is not None
        assert self.reconciliation is not None
        engine, reconciliation = self.engine, self.reconciliation

        async def apply() -> Report:
            return await apply_reconcile(
                engine, reconciliation, max_removal_share=share, allow_empty=allow_empty
            )

        self.applied = True
        self.report = anyio.run(apply)

    def fail(self, message: str, code: int = 1) -> None:
        self.failure = (message, code)
        if self.engine is not None and self.engine.shop_checked:
            self.engine.count_leftovers()


def _warn(message: str) -> None:
    print(f"pslab reconcile: warning: {message}", file=sys.stderr)


def _read(
    stack: ExitStack, path: str, audiences: list[str], region: str, rejects: TextIO | None
) -> Snapshot:
    """The snapshot, read whole (to a temporary database) before anything else happens; each
    rejected row goes to `rejects` as it is met."""

    def write_rejection(item: Rejection) -> None:
        if rejects is not None:
            row = {"line": item.line, "reason": item.reason, "event": item.event}
            rejects.write(json.dumps(row, default=str) + "\n")

    try:
        if path == "-":
            stream: TextIO = sys.stdin
        else:
            stream = stack.enter_context(open(path, encoding="utf-8-sig", newline=""))  # noqa: SIM115
        snapshot = read_snapshot(
            stream, audiences=audiences, default_region=region, on_rejection=write_rejection
        )
    except SnapshotError as exc:
        _fail(f"{path}: {exc}", code=2)
    except UnicodeDecodeError:
        _fail(f"{path} is not UTF-8 text; export the snapshot as UTF-8", code=2)
    except OSError as exc:
        _fail(f"cannot read --snapshot {path}: {exc.strerror or exc}", code=2)
    stack.callback(snapshot.close)
    if not snapshot.audiences:
        _fail(f"{path} names no audience: it has no rows; name the audience with --audience", 2)
    return snapshot


def _write_refused(out: TextIO, engine: Engine) -> None:
    """The writes Postscript refused, after the rows rejected while reading."""
    for row in engine.rejections():
        out.write(json.dumps(row, default=str) + "\n")


def _print_result(run: _Run, show: int, as_json: bool) -> None:
    assert run.engine is not None
    assert run.reconciliation is not None
    report = run.report or run.engine.report
    details = run.reconciliation.as_dict(show)
    if as_json:
        summary = {**report.as_dict(), **details, "as_of": format_instant(run.as_of)}
        print(json.dumps(summary, sort_keys=True))
        return
    for plan in run.reconciliation.plans:
        for line in _describe(plan, show):
            print(line)
    snapshot = details["snapshot"]
    print(
        f"snapshot: {snapshot['rows']} rows, {snapshot['rejected']} rejected; "
        f"{snapshot['subscribers_listed']} subscribers listed "
        f"({snapshot['listing_pages']} {'page' if snapshot['listing_pages'] == 1 else 'pages'}"
        " of 100)"
    )
    if run.settings.dry_run:
        print("dry run: nothing was written")
    elif run.report is not None:
        print(
            f"written: {report.changed} list changes, {report.subscribers_patched} subscribers "
            f"patched, {report.events_posted} events posted, {report.parked} changes parked, "
            f"{sum(report.api_calls.values())} API calls"
        )


def _describe(plan: AudiencePlan, show: int) -> list[str]:
    key = plan.audience_key
    if plan.superseded_by is not None:
        newer = format_instant(plan.superseded_by.timestamp)
        return [f"{key}: the state file already holds a newer snapshot (as of {newer}); skipped"]
    lines = [
        f"{key} as of {format_instant(plan.version.timestamp)}: {plan.members_before} members "
        f"now, the snapshot names {plan.named}: +{len(plan.adds)} -{len(plan.removes)}, "
        f"{plan.unchanged} unchanged, {len(plan.unknown)} not subscribers yet (they park), "
        f"{plan.newer} left to newer events"
    ]
    if show:
        for label, names in (("add", plan.adds), ("remove", plan.removes)):
            if names:
                more = f" (and {len(names) - show} more)" if len(names) > show else ""
                lines.append(f"  {label}: {', '.join(names[:show])}{more}")
    if plan.unaddressable:
        lines.append(
            f"  {len(plan.unaddressable)} members hold the key but no phone or email reaches "
            f"them (an email shared with a newer subscriber): {', '.join(plan.unaddressable[:3])}"
        )
    return lines


def _count(number: int, noun: str) -> str:
    return (
        f"{number} {noun}"
        if number == 1
        else f"{number} {noun}{'es' if noun.endswith('H') else 's'}"
    )


def _note(message: str) -> None:
    print(f"pslab reconcile: {message}", file=sys.stderr)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"pslab reconcile: {message}", file=sys.stderr)
    raise typer.Exit(code)
