"""One running emulator: its config and the state every handler shares.

Each shop has a store of its own (subscribers and events), created the first
time it is needed, and all of them share the one state file.
"""

from __future__ import annotations

import threading

from emulator.postscript.config import EmulatorConfig
from emulator.postscript.faults import Faults
from emulator.postscript.journal import Journal
from emulator.postscript.keywords import DEFAULT_KEYWORDS, Keyword
from emulator.postscript.rate_limit import RateLimiter
from emulator.postscript.shops import DEFAULT_SHOP_ID, Tenancy
from emulator.postscript.state_file import StateFile
from emulator.postscript.store import Store

__all__ = ["Emulator"]


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.journal = Journal(config.journal_size)
        self.rate_limiter = RateLimiter(config.rate_limit_rps)
        self.faults = Faults()
        self.keywords: tuple[Keyword, ...] = DEFAULT_KEYWORDS
        self.tenancy: Tenancy = config.initial_tenancy()
        self._lock = threading.Lock()
        self._state_file = (
            StateFile(config.state_path, legacy_shop=DEFAULT_SHOP_ID)
            if config.state_path is not None
            else None
        )
        self._stores: dict[str, Store] = {}
        for shop in (*self._stored_shops(), *(s.id for s in self.tenancy.shops)):
            self.store_of(shop)

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Emulator:
        return cls(config)

    def _stored_shops(self) -> list[str]:
        return self._state_file.shops() if self._state_file is not None else []

    @property
    def store(self) -> Store:
        """The default shop's store (the first shop of the tenancy)."""
        return self.store_of(self.tenancy.default_shop.id)

    def store_of(self, shop_id: str) -> Store:
        with self._lock:
            store = self._stores.get(shop_id)
            if store is None:
                store = self._stores[shop_id] = Store(self._state_file, shop_id)
            return store

    def configure(self, tenancy: Tenancy) -> None:
        """Replace the shops and partners; every shop keeps its data under its id."""
        self.tenancy = tenancy
        for shop in tenancy.shops:
            self.store_of(shop.id)
        self.rate_limiter.reset()

    def reset(self) -> None:
        """Forget every shop's subscribers and events, and the journal; settings stay."""
        with self._lock:
            stores = list(self._stores.values())
        for store in stores:
            store.reset()
        self.journal.clear()
        self.rate_limiter.reset()
