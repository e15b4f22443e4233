"""What one engine run needs to know: where Postscript is, the key, the state file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from postscript_audience_lab.sync.ledger import KEEP_REJECTION_BYTES, KEEP_REJECTIONS

__all__ = ["Settings"]


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Engine settings; the CLI fills them from flags and the environment."""

    secret_key: str = field(repr=False)
    state_path: Path
    base_url: str = "https://api.postscript.io"
    rate_limit: float = 15.0  # requests per second; 0 turns pacing off
    post_events: bool = True
    default_region: str = "US"
    lookup_batch: int = 50
    timeout_s: float = 10.0
    dry_run: bool = False
    # Unpaced (rate_limit 0): subscribers written at once; paced, the pacer sizes the flow.
    workers: int = 4
    max_read_age_s: float = 60.0  # a subscriber read longer ago is read again before its PATCH
    # A batch command gives up after bounded retries (and resumes on the next run); a
    # long-running process retries for ever, with capped backoff, and shows the stuck call.
    retry_forever: bool = False
    # Rejections the state file keeps (sync.ledger.RejectionLimits): rows, and bytes of text.
    keep_rejections: int = KEEP_REJECTIONS
    keep_rejection_bytes: int = KEEP_REJECTION_BYTES
