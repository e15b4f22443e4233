"""One running emulator: its config and the state every handler shares.

Each shop has a store of its own (subscribers and events), created the first
time it is needed, and all of them share the one state file. Each shop also
has its message book and webhook subscriptions (kept in memory only), and
every shop's webhook events go out through the one dispatcher.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from typing import Any

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.errors import InvalidInput
from postscript_audience_lab.emulator.postscript.model.clock import Clock
from postscript_audience_lab.emulator.postscript.model.delivery import (
    USER_AGENT,
    Delivery,
    WebhookDispatcher,
)
from postscript_audience_lab.emulator.postscript.model.keywords import Keyword, read_keywords
from postscript_audience_lab.emulator.postscript.model.messages import MessageBook
from postscript_audience_lab.emulator.postscript.model.shops import DEFAULT_SHOP_ID, Tenancy
from postscript_audience_lab.emulator.postscript.model.state_file import StateFile
from postscript_audience_lab.emulator.postscript.model.store import Store
from postscript_audience_lab.emulator.postscript.model.webhooks import (
    SIGNATURE_HEADER,
    WebhookRegistry,
    envelope,
)
from postscript_audience_lab.emulator.postscript.web.faults import Faults
from postscript_audience_lab.emulator.postscript.web.journal import Journal
from postscript_audience_lab.emulator.postscript.web.rate_limit import RateLimiter

__all__ = ["Emulator"]


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.journal = Journal(config.journal_size)
        self.rate_limiter = RateLimiter(config.rate_limit_rps)
        self.faults = Faults()
        self.tenancy: Tenancy = config.initial_tenancy()
        self._lock = threading.Lock()
        self._state_file = (
            StateFile(config.state_path, legacy_shop=DEFAULT_SHOP_ID)
            if config.state_path is not None
            else None
        )
        self._stores: dict[str, Store] = {}
        self._books: dict[str, MessageBook] = {}
        self._webhooks: dict[str, WebhookRegistry] = {}
        self.clock = Clock()
        self.dispatcher = WebhookDispatcher(
            config.webhook_retry_delays,
            config.webhook_timeout_s,
            config.webhook_transport,
            clock=self.clock,
        )
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

    def messages_of(self, shop_id: str) -> MessageBook:
        with self._lock:
            book = self._books.get(shop_id)
            if book is None:
                book = self._books[shop_id] = MessageBook(shop_id)
            return book

    def webhooks_of(self, shop_id: str) -> WebhookRegistry:
        with self._lock:
            registry = self._webhooks.get(shop_id)
            if registry is None:
                registry = self._webhooks[shop_id] = WebhookRegistry()
            return registry

    def send_due_messages(self) -> None:
        """Judge the scheduled messages of every shop whose time has come on the clock."""
        now = self.clock.now()
        with self._lock:
            books = list(self._books.items())
        for shop_id, book in books:
            book.send_due(self.store_of(shop_id), now)

    def emit(self, shop_id: str, event: str, data: dict[str, Any]) -> int:
        """Deliver `event` to every subscription of the shop that asked for it, in the
        background; returns how many deliveries were queued."""
        registry = self.webhooks_of(shop_id)
        subscriptions = registry.matching(event)
        for subscription in subscriptions:
            self.dispatcher.submit(
                Delivery(
                    shop_id=shop_id,
                    webhook_id=subscription.id,
                    callback_url=subscription.callback_url,
                    payload=envelope(subscription.id, shop_id, event, data),
                    headers={
                        **subscription.headers,
                        "Content-Type": "application/json",
                        "User-Agent": USER_AGENT,
                        SIGNATURE_HEADER: registry.token,
                    },
                )
            )
        return len(subscriptions)

    def close(self) -> None:
        """Stop sending webhooks (the app's lifespan calls this at shutdown)."""
        self.dispatcher.stop()

    def configure(self, tenancy: Tenancy) -> None:
        """Replace the shops and partners; every shop keeps its data under its id."""
        with self._lock:
            self.tenancy = tenancy
        for shop in tenancy.shops:
            self.store_of(shop.id)
        self.rate_limiter.reset()

    def add_keywords(self, shop_id: str, items: Any) -> tuple[Keyword, ...]:
        """Add the keywords `items` gives (`[{"keyword": "WELCOME"}]`) to a shop of the
        tenancy and return them; a 400 naming every problem adds none."""
        with self._lock:
            shop = self.tenancy.shop(shop_id)
            assert shop is not None, "the admin handler checks the shop"
            keywords, problems = read_keywords(
                items,
                ["body", "keywords"],
                shop_id=shop_id,
                current=shop.keywords,
                created_at=self.clock.now(),
                adding=True,
            )
            if problems:
                raise InvalidInput(problems)
            self.tenancy = self.tenancy.with_keywords(shop_id, keywords)
        return keywords[len(shop.keywords) :]

    def reset(self) -> None:
        """Forget every shop's subscribers, events, messages, webhook subscriptions and
        deliveries, the journal and the clock's offset; settings (the shops and their
        keywords included) and tokens stay."""
        with self._lock:
            stores = list(self._stores.values())
        for store in stores:
            store.reset()
        with self._lock:
            books, registries = list(self._books.values()), list(self._webhooks.values())
        for book in books:
            book.clear()
        for registry in registries:
            registry.clear()
        self.dispatcher.clear()
        self.clock.reset()
        self.journal.clear()
        self.rate_limiter.reset()
        _give_back_freed_memory()


def _give_back_freed_memory() -> None:
    """Return what a reset freed to the system: glibc keeps freed heap for reuse, so the
    process's RSS would stay at its peak after a reset of a large journal or store.
    Elsewhere than glibc (no `malloc_trim`) the allocator's own policy stands."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
