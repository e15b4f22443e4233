"""`Postscript`: one typed handle on an emulator, in this process or behind a URL.

It speaks only the emulator's admin surface under `/_emulator` (docs/design/emulator.md),
so the same handle drives the in-process emulator of the pytest fixtures and
`mock_postscript`, the session server of `postscript_server`, and a `pslab emulator`
started anywhere else.

    postscript = Postscript.connect("http://127.0.0.1:8787")
    ada = postscript.seed(phone_number="+15555550100", email="ada@example.com")
    ...                                   # the code under test calls the API
    assert postscript.subscriber(id=ada.id).properties["Last Order"] == "#1001"
    assert [event.type for event in postscript.events] == ["Order_Shipped"]

The person's side of the conversation, and what Postscript sent back:

    postscript.confirm("+15555550100")        # the pending subscriber texts YES
    postscript.inbound_text("+15555550100", "STOP")
    assert postscript.messages[-1].body == "Your order has shipped"
    deliveries = postscript.wait_for_webhooks()  # every delivery done, no sleeping
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from postscript_audience_lab.emulator.postscript.config import (
    DEFAULT_PARTNER_KEY,
    DEFAULT_SECRET_KEY,
)
from postscript_audience_lab.emulator.testing.records import (
    ApiRequest,
    Event,
    Faults,
    InboundText,
    Keyword,
    Message,
    MessageRequest,
    Subscriber,
    SubscriberSeed,
    Subscriptions,
    WebhookDelivery,
)
from postscript_audience_lab.emulator.testing.stdlib_transport import StdlibTransport
from postscript_audience_lab.emulator.testing.transport import EmulatorTransport

__all__ = ["POSTSCRIPT_API", "EmulatorAdminError", "Postscript"]

POSTSCRIPT_API = "https://api.postscript.io"
ADMIN_TIMEOUT_S = 30.0


class EmulatorAdminError(Exception):
    """The emulator refused an admin call (a bad seed or fault setting), or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Postscript:
    """A handle on one Postscript emulator: seed it, set its faults, read what it holds.

    Build one with `Postscript.in_process()` (a fresh emulator in this
    process) or `Postscript.connect(url)` (a running `pslab emulator`); the
    pytest fixtures `postscript`, `postscript_server` and `mock_postscript`
    hand you one ready made. Every read returns fresh plain data (dataclasses),
    never JSON text.

    `base_url` is where the API is: the real `https://api.postscript.io` for
    an in-process emulator (its `client()`s, and `mock_postscript`, route it
    there), the server's URL otherwise. `secret_key` is the key it accepts.
    """

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        transport: EmulatorTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
        self.partner_key: str | None = DEFAULT_PARTNER_KEY
        self.auth = "shop"  # how `client()`s authenticate: "shop" or "partner" (`use_auth`)
        self._transport = transport
        # Admin calls never go through httpcore, so an HTTP mock the test has started
        # (respx, pytest-httpx, mock_postscript itself) cannot intercept them.
        self._admin = httpx.Client(
            base_url=self.base_url,
            transport=transport or StdlibTransport(),
            timeout=ADMIN_TIMEOUT_S,
        )

    # -- building one ---------------------------------------------------------

    @classmethod
    def in_process(
        cls,
        *,
        secret_key: str = DEFAULT_SECRET_KEY,
        rate_limit: float = 15.0,
        strict: bool = False,
        webhook_retry_delays: tuple[float, ...] | None = None,
    ) -> Postscript:
        """A fresh emulator in this process; `rate_limit` is requests/s per key (0 = off);
        `strict` its strict mode (docs/design/postscript-api.md#fidelity-policy);
        `webhook_retry_delays` the seconds between
        a failing webhook delivery's attempts."""
        # Only now, so that loading the pytest plugin never loads the web stack.
        from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
        from postscript_audience_lab.emulator.postscript.web.app import create_app

        config = EmulatorConfig(secret_key=secret_key, rate_limit_rps=rate_limit, strict=strict)
        if webhook_retry_delays is not None:
            config.webhook_retry_delays = tuple(webhook_retry_delays)
        return cls(POSTSCRIPT_API, secret_key, transport=EmulatorTransport(create_app(config)))

    @classmethod
    def connect(cls, base_url: str, secret_key: str = DEFAULT_SECRET_KEY) -> Postscript:
        """A handle on the emulator serving `base_url` (e.g. `pslab emulator`'s URL)."""
        return cls(base_url, secret_key)

    # -- clients for the code under test ------------------------------------------

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client for the API: this base URL, the key sent as a Bearer token.

        `options` go to `httpx.Client` (a `headers=` of yours replaces the key).
        """
        return httpx.Client(**self._client_options(options))

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        """The same as `client()`, for async code."""
        return httpx.AsyncClient(**self._client_options(options))

    def _client_options(self, options: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"base_url": self.base_url, "headers": self.auth_headers()}
        if self._transport is not None:
            defaults["transport"] = self._transport
        return defaults | options

    def auth_headers(self) -> dict[str, str]:
        """What `client()`s send: the shop's key, or (`use_auth("partner")`) the partner's
        key and `X-Postscript-Shop-Token` naming the shop (docs/design/postscript-api.md#auth)."""
        if self.auth == "partner" and self.partner_key is not None:
            return {
                "Authorization": f"Bearer {self.partner_key}",
                "X-Postscript-Shop-Token": self.secret_key,
            }
        return {"Authorization": f"Bearer {self.secret_key}"}

    def use_auth(self, auth: str) -> None:
        """`"shop"`: `client()`s send the shop's key; `"partner"`: the first partner's."""
        if auth not in ("shop", "partner"):
            raise ValueError('auth is "shop" or "partner"')
        if auth == "partner" and self.partner_key is None:
            raise EmulatorAdminError("the emulator has no partner; give one in set_shops()")
        self.auth = auth

    def set_shops(
        self,
        shops: Iterable[Mapping[str, Any]],
        partners: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Replace the shops and partners (`PUT /_emulator/shops`); the first shop becomes
        the default, and its key the one `client()`s send."""
        body = {"shops": [dict(s) for s in shops], "partners": [dict(p) for p in partners]}
        answer = self._call("PUT", "/_emulator/shops", body)
        self.secret_key = answer["shops"][0]["secret_key"]
        self.partner_key = answer["partners"][0]["key"] if answer["partners"] else None
        return answer

    @property
    def transport(self) -> EmulatorTransport | None:
        """The in-process emulator as an httpx transport (sync and async); None for a URL."""
        return self._transport

    # -- state ------------------------------------------------------------------

    def seed(
        self,
        *,
        phone_number: str | None = None,
        email: str | None = None,
        properties: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        id: str | None = None,
        created_at: datetime | str | None = None,
        shopify_customer_id: int | str | None = None,
        subscriptions: Subscriptions | None = None,
    ) -> Subscriber:
        """Add one subscriber, confirmed (it can be sent messages), and return it as stored.

        The phone may be written any way a person would; it is stored in
        E.164. An invalid value raises `EmulatorAdminError` naming it.
        """
        given: dict[str, Any] = {
            "phone_number": phone_number,
            "email": email,
            "properties": dict(properties) if properties is not None else None,
            "tags": list(tags) if tags is not None else None,
            "id": id,
            "created_at": created_at.isoformat()
            if isinstance(created_at, datetime)
            else created_at,
            "shopify_customer_id": shopify_customer_id,
            "subscriptions": subscriptions,
        }
        (subscriber,) = self.seed_many([{k: v for k, v in given.items() if v is not None}])
        return subscriber

    def seed_many(
        self, subscribers: Iterable[SubscriberSeed | Mapping[str, Any]]
    ) -> list[Subscriber]:
        """Add several subscribers at once: all of them, or (on any problem) none."""
        body = {"subscribers": [dict(subscriber) for subscriber in subscribers]}
        answer = self._call("POST", "/_emulator/subscribers", body)
        return [Subscriber.from_json(doc) for doc in answer["subscribers"]]

    @property
    def subscribers(self) -> list[Subscriber]:
        """Every subscriber, in creation order."""
        return [Subscriber.from_json(doc) for doc in self._state()["subscribers"]]

    def subscriber(
        self,
        *,
        phone: str | None = None,
        email: str | None = None,
        id: str | None = None,
    ) -> Subscriber:
        """The one subscriber with this phone (any spelling), email (any case) or id.

        Raises `LookupError` when none has it, or when several share an email.
        """
        given = {"phone": phone, "email": email, "id": id}
        named = {key: value for key, value in given.items() if value is not None}
        if len(named) != 1:
            raise TypeError("subscriber() takes exactly one of phone=, email= or id=")
        ((key, value),) = named.items()
        everyone = self.subscribers
        found = [s for s in everyone if _has(s, key, value)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise LookupError(
                f"no subscriber has {key} {value!r} (the emulator holds {len(everyone)}); "
                "seed one with postscript.seed(...)"
            )
        ids = ", ".join(s.id for s in found)
        raise LookupError(f"{len(found)} subscribers have {key} {value!r} ({ids}); ask by id=")

    def add_keyword(
        self, keyword: str, *, id: str | None = None, shop: str | None = None
    ) -> Keyword:
        """Give a shop (default: the first) one more keyword besides JOIN and VIP, as a
        shopper texts it (`POST /_emulator/keywords`); a reset keeps it, as it keeps shops.

        Its id is `id` if given; raises `EmulatorAdminError` when the shop has it already.
        """
        item = {"keyword": keyword} if id is None else {"keyword": keyword, "id": id}
        body: dict[str, Any] = {"keywords": [item]}
        if shop is not None:
            body["shop"] = shop
        (added,) = self._call("POST", "/_emulator/keywords", body)["keywords"]
        return Keyword.from_json(added)

    @property
    def events(self) -> list[Event]:
        """Every custom event posted to the API, oldest first."""
        return [Event.from_json(doc) for doc in self._state()["events"]]

    @property
    def requests(self) -> list[ApiRequest]:
        """Every API call answered since the start or the last reset, oldest first."""
        return [
            ApiRequest.from_json(doc)
            for doc in self._call("GET", "/_emulator/requests")["requests"]
        ]

    def reset(self) -> None:
        """Forget subscribers, events, messages, webhook subscriptions and deliveries, and
        the journal; faults and the rate limit stay."""
        self._call("POST", "/_emulator/reset")

    # -- the person's phone, and what was texted ------------------------------------

    def inbound_text(self, phone: str, body: str) -> InboundText:
        """A text from `phone` to the shop: `YES` confirms a pending subscriber, `STOP`
        (or another opt-out word) opts out, anything else is an incoming message."""
        answer = self._call("POST", "/_emulator/inbound", {"phone_number": phone, "body": body})
        return InboundText.from_json(answer)

    def confirm(self, phone: str) -> Subscriber:
        """The pending subscriber with this phone texts YES; returns it, active, under the
        id `shop.subscriber.opt_in` reports. Raises `LookupError` when none is pending."""
        texted = self.inbound_text(phone, "YES")
        if texted.outcome != "confirmed" or texted.subscriber is None:
            raise LookupError(
                f"no subscriber with phone {phone!r} is waiting to confirm; create one with "
                "POST /api/v2/subscribers first"
            )
        return texted.subscriber

    @property
    def messages(self) -> list[Message]:
        """Every text sent to a subscriber (what their phone got), oldest first."""
        answer = self._call("GET", "/_emulator/messages")
        return [Message.from_json(doc) for doc in answer["sent_messages"]]

    @property
    def message_requests(self) -> list[MessageRequest]:
        """Every create-message call, sent, failed (with the reason) or still scheduled."""
        answer = self._call("GET", "/_emulator/messages")
        return [MessageRequest.from_json(doc) for doc in answer["message_requests"]]

    def messages_to(self, phone: str) -> list[Message]:
        """The texts sent to this phone (written any way), oldest first."""
        return [m for m in self.messages if _same_phone(m.phone, phone)]

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock on; messages scheduled up to then are sent, and webhook
        retries due by then are attempted before this returns."""
        self._call("POST", "/_emulator/clock", {"advance_s": seconds})

    # -- webhooks ---------------------------------------------------------------------

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """The delivery journal as it stands (deliveries may still be retrying)."""
        answer = self._call("GET", "/_emulator/webhooks/deliveries")
        return [WebhookDelivery.from_json(doc) for doc in answer["deliveries"]]

    def wait_for_webhooks(self) -> list[WebhookDelivery]:
        """Play every pending delivery's retries out now, moving the emulator's clock to each
        retry's time, and return the journal once each is delivered or has failed."""
        answer = self._call("POST", "/_emulator/webhooks/flush")
        if not answer.get("settled", True):
            raise EmulatorAdminError("webhook deliveries were still pending after 60 s")
        return [WebhookDelivery.from_json(doc) for doc in answer["deliveries"]]

    # -- faults and the rate limit -----------------------------------------------

    @property
    def fault_settings(self) -> Faults:
        """The faults now in force, and the rate limit."""
        return Faults.from_json(self._call("GET", "/_emulator/faults"))

    def faults(
        self,
        *,
        error_rate: float = 0.0,
        error_statuses: Iterable[int] = (500,),
        latency_ms: tuple[float, float] = (0.0, 0.0),
        timeout_rate: float = 0.0,
        timeout_ms: float = 3000.0,
        seed: int | None = None,
        rate_limit: float | None = None,
    ) -> Faults:
        """Replace the fault setting (no arguments: no faults); the rate limit stays, unless
        `rate_limit` gives a new one (as `rate_limit()`, in the same call).

        Each API request then draws, from `seed`'s sequence: a timeout (held
        `timeout_ms`, then the connection drops), an error answer (one of
        `error_statuses`), and a latency between the two `latency_ms` bounds.
        """
        body = {
            "error_rate": error_rate,
            "error_statuses": list(error_statuses),
            "latency_ms": list(latency_ms),
            "timeout_rate": timeout_rate,
            "timeout_ms": timeout_ms,
            "seed": seed,
            **({} if rate_limit is None else {"rate_limit_rps": rate_limit}),
        }
        return Faults.from_json(self._call("PUT", "/_emulator/faults", body))

    def rate_limit(self, rps: float) -> Faults:
        """Allow `rps` API requests per second per key (0 = no limit); faults stay as they are."""
        current = self._call("GET", "/_emulator/faults")
        return Faults.from_json(
            self._call("PUT", "/_emulator/faults", {**current, "rate_limit_rps": rps})
        )

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Release the handle (and stop the thread an in-process emulator uses for sync calls)."""
        self._admin.close()
        if self._transport is not None:
            self._transport.shutdown()

    def __enter__(self) -> Postscript:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "in process" if self._transport is not None else "remote"
        return f"<Postscript emulator {self.base_url} ({where})>"

    # -- the admin surface ---------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/state")

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            answer = self._admin.request(method, path, json=body)
        except httpx.TransportError as error:
            raise EmulatorAdminError(
                f"cannot reach the Postscript emulator at {self._admin.base_url} ({error}); "
                "is `pslab emulator` running there?"
            ) from error
        if answer.status_code >= 400:
            raise EmulatorAdminError(
                f"the emulator refused {method} {path}: {_problems(answer)}", answer.status_code
            )
        result: dict[str, Any] = answer.json()
        return result


def _has(subscriber: Subscriber, key: str, value: str) -> bool:
    if key == "id":
        return subscriber.id == value
    if key == "email":
        return (subscriber.email or "").lower() == value.strip().lower()
    return subscriber.phone_number is not None and _same_phone(subscriber.phone_number, value)


def _same_phone(stored: str, asked: str) -> bool:
    """Stored numbers are E.164; an asked one may be written as people write them (US default)."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(asked, "US")
    except phonenumbers.NumberParseException:
        return stored.lstrip("+") == "".join(c for c in asked if c.isdigit())
    return stored == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _problems(answer: httpx.Response) -> str:
    """The emulator's reasons, one line: `subscribers.0.phone_number: must be …; …`."""
    try:
        body = answer.json()
    except ValueError:
        return f"{answer.status_code} {answer.text[:200]}"
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        reasons = []
        for item in body["errors"]:
            where = ".".join(str(part) for part in item.get("loc", [])[1:])
            reasons.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "; ".join(reasons)
    if isinstance(body, dict) and "error_message" in body:
        return f"{answer.status_code} {body['error_message']}"
    return f"{answer.status_code} {body}"
