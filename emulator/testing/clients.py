"""`mock_postscript` for the clients that are not httpx: requests and aiohttp.

Each is routed by the library the field uses to mock it, only when both the
client and that library are installed (`postscript-audience-lab[requests]`,
`[aiohttp]`):

- requests, by `responses`: every request for the emulator's origin is
  answered by the same in-process emulator that serves httpx;
- aiohttp, by `aioresponses`: the same, on the caller's event loop.

The emulator sees each request as httpx would have sent it, so the handle,
the state, the faults and the rate limit are one whatever the client. A
request for another host is refused with `UnroutedRequest`, let through
(`pass_through`) or answered with an empty 200 (`assert_all_mocked=False`),
as for httpx; when a mock of the same library was already active before
this one started, requests this one does not route are its turn instead.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import re
import types
import unittest.mock
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import httpx

from postscript_audience_lab.emulator.testing.transport import EmulatorTransport

if TYPE_CHECKING:
    import requests

__all__ = ["ClientRoute", "installed_routes", "missing_routes"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# The error a route raises for a request it must refuse, given the request's description.
Refusal = Callable[[str], BaseException]


class ClientRoute(Protocol):
    """One client library routed to the emulator for the length of a `mock_postscript`."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# (client module, mocking module, extra to install)
_ROUTED = {
    "requests": ("requests", "responses", "requests"),
    "aiohttp": ("aiohttp", "aioresponses", "aiohttp"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_routes() -> list[str]:
    """Clients installed here that mock_postscript cannot route: their mocking library is not."""
    return [
        f"{client} (pip install 'postscript-audience-lab[{extra}]')"
        for client, (_, mocker, extra) in _ROUTED.items()
        if _installed(client) and not _installed(mocker)
    ]


def installed_routes(
    origin: str,
    transport: EmulatorTransport,
    *,
    pass_through: tuple[str, ...],
    assert_all_mocked: bool,
    refuse: Refusal,
) -> list[ClientRoute]:
    """A route for each client (requests, aiohttp) installed with its mocking library."""
    routes: list[ClientRoute] = []
    if _installed("requests") and _installed("responses"):
        routes.append(RequestsRoute(origin, transport, pass_through, assert_all_mocked, refuse))
    if _installed("aiohttp") and _installed("aioresponses"):
        routes.append(AiohttpRoute(origin, transport, pass_through, assert_all_mocked, refuse))
    return routes


def _origin_pattern(origin: str) -> re.Pattern[str]:
    """The URLs of `origin` (`https://api.postscript.io`, with a default port or none)."""
    url = httpx.URL(origin)
    default = {"https": 443, "http": 80}.get(url.scheme)
    ports = {url.port or default}
    port = "" if ports == {default} else f":{url.port}"
    optional = f"(:{default})?" if not port else ""
    return re.compile(
        rf"{re.escape(url.scheme)}://{re.escape(url.host)}{re.escape(port)}{optional}(/|\?|$)",
        re.IGNORECASE,
    )


def _answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    return response.status_code, dict(response.headers), response.content


# -- requests, through responses ----------------------------------------------------


class RequestsRoute:
    def __init__(
        self,
        origin: str,
        transport: EmulatorTransport,
        pass_through: tuple[str, ...],
        assert_all_mocked: bool,
        refuse: Refusal,
    ) -> None:
        import requests.adapters
        import responses

        self._transport = transport
        self._refuse = refuse
        self._assert_all_mocked = assert_all_mocked
        # A requests mock already active (the user's own) keeps what it routes: what this
        # one does not route is passed to it, as respx routers take turns.
        current = requests.adapters.HTTPAdapter.send
        self._beneath = current is not responses._real_send
        anything = re.compile(".*")
        self._mock = responses.RequestsMock(
            assert_all_requests_are_fired=False,
            passthru_prefixes=(*pass_through, *([anything] if self._beneath else [])),  # type: ignore[arg-type]
            real_adapter_send=cast(Any, current),
        )
        pattern = _origin_pattern(origin)
        for method in METHODS:
            self._mock.add_callback(method, pattern, callback=self._serve, content_type=None)
        if not self._beneath:
            for method in METHODS:
                self._mock.add_callback(
                    method, anything, callback=self._elsewhere, content_type=None
                )

    def start(self) -> None:
        self._mock.start()

    def stop(self) -> None:
        self._mock.stop(allow_assert=False)
        self._mock.reset()

    def _serve(self, request: requests.PreparedRequest) -> tuple[int, Mapping[str, str], bytes]:
        import requests

        body: Any = request.body  # responses has read a file's body into bytes
        sent = httpx.Request(
            request.method or "GET",
            request.url or "",
            headers=[(key, _text(value)) for key, value in request.headers.items()],
            content=body.encode() if isinstance(body, str) else body,
        )
        try:
            return _answer(self._transport.handle_request(sent))
        except httpx.TransportError as dropped:
            raise requests.ConnectionError(str(dropped), request=request) from dropped

    def _elsewhere(self, request: requests.PreparedRequest) -> tuple[int, Mapping[str, str], bytes]:
        if self._assert_all_mocked:
            raise self._refuse(f"{request.method} {request.url}")
        return 200, {}, b""


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


# -- aiohttp, through aioresponses --------------------------------------------------


class AiohttpRoute:
    def __init__(
        self,
        origin: str,
        transport: EmulatorTransport,
        pass_through: tuple[str, ...],
        assert_all_mocked: bool,
        refuse: Refusal,
    ) -> None:
        import aiohttp
        from aioresponses import aioresponses

        self._transport = transport
        self._refuse = refuse
        self._assert_all_mocked = assert_all_mocked
        beneath = not _is_function(aiohttp.ClientSession._request)
        self._mock = aioresponses(passthrough=list(pass_through), passthrough_unmatched=beneath)
        # aioresponses patches with create_autospec, which reads aiohttp's signatures anew
        # on every start: ~1.5 ms, half of what starting mock_postscript cost. aiohttp is
        # the only caller of `_request`, so a plain function in its place serves the same.
        self._mock.patcher = unittest.mock.patch(
            "aiohttp.client.ClientSession._request", new=_requesting(self._mock._request_mock)
        )
        self._pattern = _origin_pattern(origin)
        self._beneath = beneath

    def start(self) -> None:
        self._mock.start()
        for method in METHODS:
            self._mock.add(self._pattern, method, callback=self._serving(method), repeat=True)
            if not self._beneath:
                self._mock.add(
                    re.compile(".*"), method, callback=self._refusing(method), repeat=True
                )

    def stop(self) -> None:
        self._mock.stop()

    def _serving(self, method: str) -> Callable[..., Awaitable[Any]]:
        # aioresponses hands a callback the URL and the request's keyword arguments only.
        async def serve(url: Any, **sent: Any) -> Any:
            return await self._serve(method, url, sent)

        return serve

    def _refusing(self, method: str) -> Callable[..., Awaitable[Any]]:
        async def elsewhere(url: Any, **sent: Any) -> Any:
            return self._elsewhere(method, url)

        return elsewhere

    async def _serve(self, method: str, url: Any, sent: Mapping[str, Any]) -> Any:
        import aiohttp
        from aioresponses import CallbackResult

        request = httpx.Request(
            method, str(url), headers=_aiohttp_headers(sent), content=_aiohttp_body(sent)
        )
        try:
            answer = await self._transport.handle_async_request(request)
        except httpx.TransportError as dropped:
            raise aiohttp.ServerDisconnectedError(str(dropped)) from dropped
        return CallbackResult(
            method=method,
            response_class=_response_class(),
            status=answer.status_code,
            reason=answer.reason_phrase,  # raise_for_status() needs one
            headers=_multidict(answer.headers.multi_items()),
            body=answer.content,
            content_type=answer.headers.get("content-type", "application/octet-stream"),
        )

    def _elsewhere(self, method: str, url: Any) -> Any:
        from aioresponses import CallbackResult

        if self._assert_all_mocked:
            raise self._refuse(f"{method} {url}")
        return CallbackResult(
            method=method,
            status=200,
            body=b"",
            content_type="text/plain",
            response_class=_response_class(),
        )


@functools.cache
def _response_class() -> type[Any]:
    """aiohttp's ClientResponse, given what aiohttp 3.14 requires and aioresponses 0.7.x does
    not pass (pnuckowski/aioresponses#289): a `stream_writer`, of which it reads the size."""
    import aiohttp

    if "stream_writer" not in inspect.signature(aiohttp.ClientResponse).parameters:
        return aiohttp.ClientResponse

    class Response(aiohttp.ClientResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
            super().__init__(*args, **kwargs)

    return Response


def _requesting(request_mock: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """What stands for `ClientSession._request` while an `AiohttpRoute` is active."""

    async def _request(session: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        return await request_mock(session, method, url, *args, **kwargs)

    _request.pslab_route = True  # type: ignore[attr-defined]
    return _request


def _is_function(attribute: Any) -> bool:
    """True for aiohttp's own `ClientSession._request`, False for a mock patched over it
    (aioresponses' own, or another `AiohttpRoute`'s)."""
    return (
        callable(attribute)
        and not hasattr(attribute, "assert_called")
        and not hasattr(attribute, "pslab_route")
    )


def _multidict(headers: list[tuple[str, str]]) -> Any:
    from multidict import CIMultiDict

    return CIMultiDict(headers)


def _aiohttp_headers(sent: Mapping[str, Any]) -> list[tuple[str, str]]:
    given = sent.get("headers") or {}
    items = given.items() if hasattr(given, "items") else given
    headers = [(str(key), str(value)) for key, value in items]
    if sent.get("json") is not None and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    elif isinstance(sent.get("data"), Mapping) and not any(
        k.lower() == "content-type" for k, _ in headers
    ):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    return headers


def _aiohttp_body(sent: Mapping[str, Any]) -> bytes:
    """The body aiohttp would send for `json=` or `data=` (bytes, text or a form's dict)."""
    if sent.get("json") is not None:
        return json.dumps(sent["json"]).encode()
    data = sent.get("data")
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, Mapping):
        return urllib.parse.urlencode(data).encode()
    raise TypeError(
        f"mock_postscript sends aiohttp bodies given as json=, bytes, text or a dict; "
        f"got {type(data).__name__}"
    )
