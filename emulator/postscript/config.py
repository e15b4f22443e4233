"""How an emulator instance is set up: the one value `create_app` takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from postscript_audience_lab.emulator.postscript.model.delivery import DEFAULT_RETRY_DELAYS_S
from postscript_audience_lab.emulator.postscript.model.shops import (
    DEFAULT_PARTNER_KEY,
    Tenancy,
    default_tenancy,
)

__all__ = ["DEFAULT_PARTNER_KEY", "DEFAULT_SECRET_KEY", "EmulatorConfig"]

DEFAULT_SECRET_KEY = "sk_test_pslab"  # noqa: S105 - the emulator's public default, not a secret


@dataclass
class EmulatorConfig:
    """Settings fixed for the life of one emulator app.

    `rate_limit_rps` and the shops are only starting values: `PUT /_emulator/faults`
    and `PUT /_emulator/shops` can change them while the emulator runs. Without
    `tenancy`, the emulator has one shop answering to `secret_key` and one
    partner answering to `partner_key` (None: no partner).
    """

    secret_key: str = DEFAULT_SECRET_KEY
    rate_limit_rps: float = 15.0  # per key; 0 turns the limit off
    state_path: Path | None = None  # SQLite file; None keeps everything in memory
    page_size: int = 100
    journal_size: int = 100_000  # the request journal keeps this many latest entries
    default_region: str = "US"  # how phone numbers without a country code are read
    strict: bool = False  # also refuse what Postscript may accept (docs/design/emulator-choices.md)
    partner_key: str | None = DEFAULT_PARTNER_KEY
    tenancy: Tenancy | None = None  # shops and partners; replaces secret_key and partner_key
    # Webhooks (docs/design/emulator.md): the waits between a failed delivery's attempts, each
    # attempt's timeout, and (tests) the transport deliveries go through instead of the network.
    webhook_retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
    webhook_timeout_s: float = 10.0
    webhook_transport: Callable[[], httpx.AsyncBaseTransport] | None = None

    def initial_tenancy(self) -> Tenancy:
        if self.tenancy is not None:
            return self.tenancy
        return default_tenancy(self.secret_key, self.partner_key)
