"""Who is calling: a shop by its API key, or a partner naming a shop
(docs/design/postscript-api.md#auth).

- `Authorization: Bearer <shop key>` (or legacy Basic with the key as user):
  the shop;
- `Authorization: Bearer <partner key>` plus `X-Postscript-Shop-Token: <shop
  key>`: the partner acting for that shop, rate limited per partner/shop pair;
- a partner key alone: only `GET /api/v2/me` (the partner), anything else 403;
- a shop's public key (`pk_…`): 403, it does not authorise API calls;
- anything else, or nothing: 401.

A shop or partner may also be set up with operation groups it is
`forbidden` (403), to stand in for a key without a permission.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from postscript_audience_lab.emulator.postscript.errors import (
    Forbidden,
    error_body,
    error_headers,
    forbidden_body,
)
from postscript_audience_lab.emulator.postscript.fidelity import choice_header
from postscript_audience_lab.emulator.postscript.model.shops import Partner, Shop, Tenancy
from postscript_audience_lab.emulator.postscript.web.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    header,
    is_api_request,
    send_json,
)

__all__ = [
    "SHOP_TOKEN_HEADER",
    "UNAUTHORIZED_MESSAGE",
    "AuthMiddleware",
    "Caller",
    "identify",
    "key_from_header",
    "operation_group",
]

UNAUTHORIZED_MESSAGE = "Missing or invalid API key; send Authorization: Bearer <secret key>"
UNKNOWN_SHOP_MESSAGE = "X-Postscript-Shop-Token names no shop; send the shop's API token"
SHOP_TOKEN_HEADER = "X-Postscript-Shop-Token"  # noqa: S105 - a header name
_SHOP_TOKEN_NAME = SHOP_TOKEN_HEADER.lower().encode()  # as ASGI gives it

# Path prefixes of the published reference's operation groups.
_GROUPS = (
    ("/api/v2/me", "identity"),
    ("/api/v2/subscribers", "subscribers"),
    ("/api/v2/events", "events"),
    ("/api/v2/keywords", "keywords"),
    ("/api/v2/compliance/", "compliance"),
    ("/api/v2/message_requests", "messages"),
    ("/api/v2/sent_messages", "messages"),
    ("/api/v2/webhooks", "webhooks"),
)


def operation_group(path: str) -> str | None:
    for prefix, group in _GROUPS:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return group
    return None


@dataclass(frozen=True)
class Caller:
    """A shop calling for itself, a partner acting for a shop, or a partner alone."""

    shop: Shop | None
    partner: Partner | None = None

    @property
    def rate_key(self) -> str:
        """The documented scope of the 15/s limit: the token, or the partner/shop pair."""
        parts = [f"partner:{self.partner.id}"] if self.partner else []
        parts += [f"shop:{self.shop.id}"] if self.shop else []
        return "/".join(parts)

    @property
    def forbidden(self) -> frozenset[str]:
        denied = self.partner.forbidden if self.partner else frozenset()
        return denied | (self.shop.forbidden if self.shop else frozenset())


def key_from_header(value: str | None) -> str | None:
    """The key a request presents, or None when the header is missing or malformed."""
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


class _Refused(Exception):
    def __init__(self, status: int, body: object, headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _unauthorized(message: str) -> _Refused:
    headers = {**error_headers(401), "www-authenticate": "Bearer"}
    return _Refused(401, error_body(401, message), headers)


def identify(
    tenancy: Tenancy, key: str | None, shop_token: str | None, group: str | None
) -> Caller:
    """The caller a request's credentials name, or `_Refused` with the answer to give."""
    if key is None:
        raise _unauthorized(UNAUTHORIZED_MESSAGE)
    shop = tenancy.shop_by_key(key)
    if shop is not None:
        return Caller(shop)
    partner = tenancy.partner_by_key(key)
    if partner is not None:
        return _partner_caller(tenancy, partner, shop_token, group)
    if tenancy.shop_by_public_key(key) is not None:
        raise _Refused(403, forbidden_body(group), choice_header("auth-keys"))
    raise _unauthorized(UNAUTHORIZED_MESSAGE)


def _partner_caller(
    tenancy: Tenancy, partner: Partner, shop_token: str | None, group: str | None
) -> Caller:
    token = (shop_token or "").strip()
    if not token:
        if group not in ("identity", None):
            raise _Refused(403, forbidden_body(group), choice_header("auth-partner"))
        return Caller(None, partner)
    shop = tenancy.shop_by_key(token)
    if shop is None:
        raise _unauthorized(UNKNOWN_SHOP_MESSAGE)
    return Caller(shop, partner)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, tenancy: Callable[[], Tenancy]) -> None:
        self.app = app
        self.tenancy = tenancy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_request(scope):
            await self.app(scope, receive, send)
            return
        group = operation_group(str(scope["path"]))
        try:
            caller = identify(
                self.tenancy(),
                key_from_header(header(scope, b"authorization")),
                header(scope, _SHOP_TOKEN_NAME),
                group,
            )
            if group in caller.forbidden:
                refusal = Forbidden(group)
                raise _Refused(refusal.status, refusal.body, refusal.headers)
        except _Refused as refused:
            headers = [(k.encode(), v.encode()) for k, v in refused.headers.items()]
            await send_json(send, refused.status, refused.body, headers)
            return
        scope["pslab.caller"] = caller
        scope["pslab.key"] = caller.rate_key
        await self.app(scope, receive, send)
