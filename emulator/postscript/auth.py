"""Who may call the API: `Authorization: Bearer <key>`, or legacy Basic with the key as user."""

from __future__ import annotations

import base64
import binascii
import hmac

from emulator.postscript.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    header,
    is_api_request,
    send_json,
)
from emulator.postscript.errors import error_body

__all__ = ["UNAUTHORIZED_MESSAGE", "AuthMiddleware", "key_from_header"]

UNAUTHORIZED_MESSAGE = "Missing or invalid API key; send Authorization: Bearer <secret key>"


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


class AuthMiddleware:
    def __init__(self, app: ASGIApp, secret_key: str) -> None:
        self.app = app
        self._secret = secret_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_request(scope):
            await self.app(scope, receive, send)
            return
        key = key_from_header(header(scope, b"authorization"))
        if key is None or not hmac.compare_digest(key.encode(), self._secret):
            await send_json(
                send, 401, error_body(401, UNAUTHORIZED_MESSAGE), [(b"www-authenticate", b"Bearer")]
            )
            return
        scope["pslab.key"] = key
        await self.app(scope, receive, send)
