"""An httpx transport over the standard library's `urllib`, out of the reach of HTTP mocks.

respx and pytest-httpx intercept httpx by patching httpcore and httpx's own
transports. The handle's admin calls to a served emulator use this transport
instead, so a test may mock every other host and still seed and inspect the
emulator. It is for short JSON calls on loopback: no proxies, no streaming.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import httpx

__all__ = ["StdlibTransport"]

DEFAULT_TIMEOUT_S = 30.0


class StdlibTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        # An empty ProxyHandler: loopback calls must not be sent to an HTTP(S)_PROXY.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        outgoing = urllib.request.Request(  # noqa: S310 -- the URL the handle was given
            str(request.url),
            data=request.read() or None,
            headers=dict(request.headers),
            method=request.method,
        )
        timeout = request.extensions.get("timeout", {}).get("read") or DEFAULT_TIMEOUT_S
        try:
            with self._opener.open(outgoing, timeout=timeout) as answer:
                return httpx.Response(
                    answer.status, headers=answer.headers.items(), content=answer.read()
                )
        except urllib.error.HTTPError as refused:
            with refused:
                return httpx.Response(
                    refused.code, headers=refused.headers.items(), content=refused.read()
                )
        except (urllib.error.URLError, OSError) as error:
            raise httpx.ConnectError(
                str(getattr(error, "reason", error)), request=request
            ) from error
