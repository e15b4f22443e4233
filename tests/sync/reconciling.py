"""`pslab reconcile` wired to the in-process emulator, as the command runs it (test helper)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.reconcile import (
    DEFAULT_MAX_REMOVAL_SHARE,
    Reconciliation,
    apply_reconcile,
    plan_reconcile,
)
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.snapshot import Snapshot, read_snapshot
from tests.sync.world import World


def snapshot_of(
    rows: Iterable[tuple[str, str | None, str | None]], audiences: Sequence[str] = ()
) -> Snapshot:
    """A CSV snapshot of (audience_key, phone, email) rows, read as the command reads it."""
    lines = ["audience_key,phone,email"]
    lines += [f"{key},{phone or ''},{email or ''}" for key, phone, email in rows]
    return read_snapshot(io.StringIO("\n".join(lines) + "\n"), audiences=audiences)


async def reconcile(
    world: World,
    state_path: Path,
    snapshot: Snapshot,
    as_of: datetime,
    *,
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE,
    allow_empty: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> tuple[Reconciliation, Report]:
    """One reconcile run: plan (reading the shop), then apply unless it is a dry run."""
    settings = world.settings(state_path, **overrides)
    transport = transport or world.transport
    with Engine(settings, transport) as engine:
        planned = await plan_reconcile(engine, snapshot, as_of, transport=transport)
        if settings.dry_run:
            return planned, engine.report
        report = await apply_reconcile(
            engine, planned, max_removal_share=max_removal_share, allow_empty=allow_empty
        )
        return planned, report
