"""What one run did, as the `--json` summary of `pslab sync` prints it."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Report"]


@dataclass
class Report:
    """Counts for one engine run (ingest + drain).

    After a drain every change the ledger holds is settled (`applied`, or
    superseded), `refused`, `parked`, or still `pending` (only when the drain
    stopped early: the exit status is then non-zero).
    """

    received: int = 0  # events read (batches count each event), rejected ones included
    duplicates: int = 0  # messageIds seen before (this run or an earlier one)
    stale: int = 0  # not newer than what the engine already knew or wrote
    rejected: int = 0  # failed docs/design/events.md, reasons in --rejects-out
    # oldest rejections (this run's or earlier) dropped to keep the state file within
    # --keep-rejections / --keep-rejection-bytes; --rejects-out lacks those of this run
    rejections_dropped: int = 0
    accepted: int = 0  # new winners stored in the ledger
    applied: int = 0  # winning changes settled against Postscript
    changed: int = 0  # list entries added or removed
    refused: int = 0  # changes Postscript refused (400), with reasons in --rejects-out
    parked: int = 0  # changes waiting for a subscriber (all runs), after this drain
    parked_identities: int = 0
    pending: int = 0  # changes not yet settled (0 when drained), each counted once
    journaled: int = 0  # writes begun and not yet confirmed (their changes are pending)
    unparked: int = 0  # parked changes retried at the start of this run
    resumed: int = 0  # unfinished writes of a crashed run, completed
    identities: int = 0  # distinct identity keys looked up: phone (E.164), else email
    subscribers_patched: int = 0
    events_posted: int = 0
    ambiguous: int = 0  # emails that matched several subscribers
    lookup_batch: int = 50
    dry_run: bool = False
    api_calls: Counter[str] = field(default_factory=Counter)
    # pace (docs/design/economy.md#pace): 429s met (each sent again), requests/s between the drain's
    # first and last call, the rate the adaptive pacing allowed on average after its first ten
    # seconds (None unpaced), and seconds from a subscriber's read to its PATCH: p50, p99, max
    rate_limited: int = 0
    requests_per_s: float | None = None
    settled_rate: float | None = None
    read_to_patch_s: dict[str, float] = field(default_factory=dict)

    @property
    def lower_bound(self) -> int:
        """The fewest calls the changes need (docs/design/economy.md): ceil(identities / lookup
        batch) + patched subscribers + posted events."""
        lookups = math.ceil(self.identities / self.lookup_batch) if self.lookup_batch else 0
        return lookups + self.subscribers_patched + self.events_posted

    @property
    def drained(self) -> bool:
        return self.pending == 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        calls = dict(sorted(self.api_calls.items()))
        data["api_calls"] = {"total": sum(calls.values()), **calls}
        data["lower_bound"] = self.lower_bound
        return data
