"""The engine's memory between runs: one SQLite file (the `--state` of docs/design/commands.md).

Tables:
- `seen`        every accepted messageId (duplicates are recognised across runs);
- `winners`     the greatest version per (identity, audience) and whether it is
                `pending` (not yet written), `parked` (no subscriber yet) or `done`;
- `intents`     planned writes not yet confirmed (the crash journal of
docs/design/convergence.md#nothing-lost),
                with `intent_events`, each marked once posted;
- `applied`     per (subscriber, audience) the version the engine last settled,
                so a stale event arriving through another identity changes nothing;
- `identities`  the identity -> subscriber cache (written by `sync.lookup`);
- `rejections`  rejected events with their reasons, per run; the latest ones only,
                within `RejectionLimits` (rows and bytes), the oldest dropped first;
- `floors`      per audience, the version of the newest full snapshot reconciled
                (`sync.reconcile`): every older change of that audience is stale;
- `meta`        the shop the state belongs to;
- `counters`    rows of `winners` per status, the rejections kept (rows and bytes) and
                dropped, and the journaled intents: kept by triggers in the transaction
                that changes those tables, so `/status` reads them instead of counting.

The schema, its version and the migrations that bring an older file up to it are in
`schema`; the one-process-at-a-time lock (an exclusive `flock` on the file itself) and the
copy of a state file in `lock`; the row types and the statements that write one row in
`rows`; the `Ledger` that reads and writes the open file in `store`. Other modules import
them from here.
"""

from postscript_audience_lab.sync.ledger.lock import (
    PRIVATE_FILE_MODE,
    copy_state,
    hold_lock,
    remove_state,
)
from postscript_audience_lab.sync.ledger.rows import (
    KEEP_REJECTION_BYTES,
    KEEP_REJECTIONS,
    MAX_STORED_EVENT_CHARS,
    PRUNE_MARGIN,
    Counts,
    Identity,
    IngestCounts,
    Intent,
    Outcome,
    RejectionLimits,
    Status,
    stored_event,
)
from postscript_audience_lab.sync.ledger.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    schema_version,
)
from postscript_audience_lab.sync.ledger.store import Ledger

__all__ = [
    "KEEP_REJECTIONS",
    "KEEP_REJECTION_BYTES",
    "MAX_STORED_EVENT_CHARS",
    "MIGRATIONS",
    "PRIVATE_FILE_MODE",
    "PRUNE_MARGIN",
    "SCHEMA_VERSION",
    "Counts",
    "Identity",
    "IngestCounts",
    "Intent",
    "Ledger",
    "Migration",
    "Outcome",
    "RejectionLimits",
    "Status",
    "copy_state",
    "hold_lock",
    "remove_state",
    "schema_version",
    "stored_event",
]
