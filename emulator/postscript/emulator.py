"""One running emulator: its config and the state every handler shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.postscript.config import EmulatorConfig
from emulator.postscript.faults import Faults
from emulator.postscript.journal import Journal
from emulator.postscript.keywords import DEFAULT_KEYWORDS, Keyword
from emulator.postscript.rate_limit import RateLimiter
from emulator.postscript.state_file import StateFile
from emulator.postscript.store import Store

__all__ = ["Emulator"]


@dataclass
class Emulator:
    config: EmulatorConfig
    store: Store
    journal: Journal
    rate_limiter: RateLimiter
    faults: Faults = field(default_factory=Faults)
    keywords: list[Keyword] = field(default_factory=lambda: list(DEFAULT_KEYWORDS))

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Emulator:
        state_file = StateFile(config.state_path) if config.state_path is not None else None
        return cls(
            config=config,
            store=Store(state_file),
            journal=Journal(config.journal_size),
            rate_limiter=RateLimiter(config.rate_limit_rps),
        )

    def reset(self) -> None:
        """Forget subscribers, events and the journal; faults and the rate limit stay."""
        self.store.reset()
        self.journal.clear()
        self.rate_limiter.reset()
