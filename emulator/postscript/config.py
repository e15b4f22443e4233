"""How an emulator instance is set up: the one value `create_app` takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_SECRET_KEY", "EmulatorConfig"]

DEFAULT_SECRET_KEY = "sk_test_pslab"  # noqa: S105 - the emulator's public default, not a secret


@dataclass
class EmulatorConfig:
    """Settings fixed for the life of one emulator app.

    `rate_limit_rps` is only the starting value: `PUT /_emulator/faults` can
    change it while the emulator runs.
    """

    secret_key: str = DEFAULT_SECRET_KEY
    rate_limit_rps: float = 15.0  # per key; 0 turns the limit off
    state_path: Path | None = None  # SQLite file; None keeps everything in memory
    page_size: int = 100
    journal_size: int = 100_000  # the request journal keeps this many latest entries
    default_region: str = "US"  # how phone numbers without a country code are read
