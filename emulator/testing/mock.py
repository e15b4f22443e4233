"""`mock_postscript`: every httpx request for https://api.postscript.io, answered in process.

    with mock_postscript() as postscript:
        postscript.seed(phone_number="+15555550100")
        notify_shipped(order)            # calls https://api.postscript.io, unchanged
        assert postscript.events[0].type == "Order_Shipped"

It is a context manager and a decorator (of sync and async functions; a
decorated function with a `postscript` parameter is handed the handle), as
moto's `mock_aws` is. Each use starts a fresh emulator (docs/design/emulator.md).

Routing is respx's: sync and async httpx clients, however they were built,
reach the emulator. A request for any other host fails with
`UnroutedRequest`, as respx's own default does; `pass_through` lets chosen
URL prefixes reach the network, `assert_all_mocked=False` answers them with
respx's empty 200, and a respx router of your own (`respx.mock`, the
`respx_mock` fixture) active at the same time serves the hosts it routes.
requests and aiohttp are routed the same way, by `responses` and
`aioresponses`, when those are installed (emulator/testing/clients.py).

While it is active, any other way to the real API host fails at once
(emulator/testing/guard.py). A request that was refused, and that the code
under test then swallowed, fails the block's end (the test's teardown) unless
it was expected: `expect_unrouted=True`, or a list of URL prefixes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import ExitStack
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx
import respx
from respx.models import AllMockedAssertionError

from postscript_audience_lab.emulator.postscript.config import DEFAULT_SECRET_KEY
from postscript_audience_lab.emulator.testing.clients import (
    ClientRoute,
    installed_routes,
    missing_routes,
)
from postscript_audience_lab.emulator.testing.guard import blocking_real_postscript
from postscript_audience_lab.emulator.testing.handle import POSTSCRIPT_API, Postscript
from postscript_audience_lab.emulator.testing.options import EmulatorOptions

__all__ = ["PostscriptMock", "UnroutedRequest", "mock_postscript"]

R = TypeVar("R")

# respx calls a route's side effect the same way for sync and async clients; only the
# router's entry point tells them apart, and this flag carries that to the side effect.
_SERVING_ASYNC: ContextVar[bool] = ContextVar("pslab_serving_async", default=False)


class UnroutedRequest(AllMockedAssertionError):
    """The code under test sent a request that `mock_postscript` has no route for.

    A subclass of respx's own error, so that another respx router active at
    the same time still gets its turn at the request.
    """


class _EmulatorRouter(respx.MockRouter):
    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        serving_async = _SERVING_ASYNC.set(True)
        try:
            return await super().async_handler(request)
        finally:
            _SERVING_ASYNC.reset(serving_async)


class PostscriptMock:
    """What `mock_postscript(...)` returns: start it with `with`, or decorate a function."""

    def __init__(
        self,
        options: EmulatorOptions,
        postscript: Postscript | None = None,
        *,
        owner: str = "mock_postscript()",
    ) -> None:
        self.options = options
        self.owner = owner
        # "METHOD URL" of each request refused (or each connection the guard blocked)
        self.unrouted: list[str] = []
        self._given = postscript
        self._postscript: Postscript | None = None
        self._router: _EmulatorRouter | None = None
        self._routes: list[ClientRoute] = []
        self._guard: ExitStack | None = None

    # -- context manager ------------------------------------------------------

    def start(self) -> Postscript:
        """Start routing; the emulator is the one given, or a fresh one set up with the options."""
        if self._router is not None:
            raise RuntimeError(
                "this mock_postscript is already active; call mock_postscript() again"
            )
        postscript = self._given or self.options.in_process()
        self.unrouted.clear()
        guard = ExitStack()
        try:
            if self._given is None:
                self.options.set_up(postscript)
            router = self._router_for(postscript)
            blocked = guard.enter_context(blocking_real_postscript(self.owner))
            router.start()
            guard.callback(router.stop, quiet=True)
            for route in self._client_routes(postscript):
                route.start()
                guard.callback(route.stop)
            guard.callback(lambda: self.unrouted.extend(blocked))
        except BaseException:
            guard.close()
            if self._given is None:
                postscript.close()
            raise
        self._postscript, self._router, self._guard = postscript, router, guard
        return postscript

    def stop(self, *, check: bool = True) -> None:
        """Stop routing (and close the emulator this mock started).

        With `check`, raise `UnroutedRequest` if the code under test sent a
        request no route served, even though it caught the error it got.
        """
        guard, postscript = self._guard, self._postscript
        self._router = self._postscript = self._guard = None
        if guard is not None:
            guard.close()
        if postscript is not None and self._given is None:
            postscript.close()
        unexpected = [r for r in self.unrouted if not self._expected(r)]
        if check and unexpected:
            listed = "; ".join(unexpected)
            raise UnroutedRequest(
                f"the code under test sent {len(unexpected)} request(s) that mock_postscript "
                f"does not route, and carried on: {listed}. {self._advice()} If the test "
                "expects them, say so: expect_unrouted=True (or a list of URL prefixes)."
            )

    def _expected(self, unrouted: str) -> bool:
        expected = self.options.expect_unrouted
        if isinstance(expected, bool):
            return expected
        url = unrouted.partition(" ")[2]
        return any(url.startswith(prefix) for prefix in expected)

    def __enter__(self) -> Postscript:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop(check=exc_type is None)

    # -- decorator ---------------------------------------------------------------

    def __call__(self, func: Callable[..., R]) -> Callable[..., R]:
        """Run each call of `func` inside a fresh mock (async functions too).

        A `postscript` parameter of `func` is filled with the handle and
        hidden from the wrapper's signature (and so from pytest).
        """
        wants_handle = "postscript" in inspect.signature(func).parameters

        def fresh() -> PostscriptMock:
            return PostscriptMock(self.options, self._given, owner=self.owner)

        if inspect.iscoroutinefunction(func):
            async_func: Callable[..., Awaitable[Any]] = func

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with fresh() as postscript:
                    if wants_handle:
                        kwargs["postscript"] = postscript
                    return await async_func(*args, **kwargs)

            wrapper: Callable[..., Any] = run_async
        else:

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                with fresh() as postscript:
                    if wants_handle:
                        kwargs["postscript"] = postscript
                    return func(*args, **kwargs)

            wrapper = run
        if wants_handle:
            # The handle is ours to give: pytest must not look for a fixture of that name.
            signature = inspect.signature(func)
            kept = [p for p in signature.parameters.values() if p.name != "postscript"]
            wrapper.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
        return wrapper

    # -- routing ---------------------------------------------------------------------

    def _router_for(self, postscript: Postscript) -> _EmulatorRouter:
        transport = postscript.transport
        if transport is None:
            raise ValueError("mock_postscript routes to an in-process emulator, not to a URL")
        origin = httpx.URL(self.options.base_url)
        router = _EmulatorRouter(
            assert_all_called=False, assert_all_mocked=self.options.assert_all_mocked
        )

        def serve(request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
            if _SERVING_ASYNC.get():
                return transport.handle_async_request(request)
            return transport.handle_request(request)

        where: dict[str, Any] = {"scheme": origin.scheme, "host": origin.host}
        if origin.port is not None:
            where["port"] = origin.port
        router.route(**where).mock(side_effect=serve)
        for prefix in self.options.pass_through:
            router.route(url__startswith=prefix).pass_through()
        if self.options.assert_all_mocked:
            router.route().mock(side_effect=self._refuse)
        return router

    def _client_routes(self, postscript: Postscript) -> list[ClientRoute]:
        assert postscript.transport is not None
        return installed_routes(
            self.options.base_url,
            postscript.transport,
            pass_through=self.options.pass_through,
            assert_all_mocked=self.options.assert_all_mocked,
            refuse=self._refusal,
        )

    def _refuse(self, request: httpx.Request) -> httpx.Response:
        router = self._router
        others = [
            r
            for r in (router.Mocker.routers if router and router.Mocker else [])
            if r is not router
        ]
        if others:  # another router may still serve it: then it is not ours to report
            raise UnroutedRequest(self._no_route(_describe(request)))
        raise self._refusal(_describe(request))

    def _refusal(self, described: str) -> UnroutedRequest:
        self.unrouted.append(described)
        return UnroutedRequest(self._no_route(described))

    def _no_route(self, described: str) -> str:
        return (
            f"mock_postscript has no route for {described}: it serves "
            f"{self.options.base_url} only. {self._advice()}"
        )

    def _advice(self) -> str:
        unrouted = missing_routes()
        missing = f" Not routed here: {', '.join(unrouted)}." if unrouted else ""
        return (
            "Mock other hosts with respx, responses or aioresponses, let them "
            "through with pass_through=[...] or answer them with an empty 200 with "
            "assert_all_mocked=False (as mock_postscript(...) arguments or "
            f"@pytest.mark.postscript(...) options).{missing}"
        )


def _describe(request: httpx.Request) -> str:
    return f"{request.method} {request.url}"


@overload
def mock_postscript(func: Callable[..., R], /) -> Callable[..., R]: ...


@overload
def mock_postscript(
    *,
    secret_key: str = DEFAULT_SECRET_KEY,
    rate_limit: float = 15.0,
    subscribers: Iterable[Mapping[str, Any]] = (),
    faults: Mapping[str, Any] | None = None,
    base_url: str = POSTSCRIPT_API,
    assert_all_mocked: bool = True,
    pass_through: Iterable[str] = (),
    strict: bool = False,
    shops: Iterable[Mapping[str, Any]] = (),
    partners: Iterable[Mapping[str, Any]] | None = None,
    keywords: Iterable[str | Mapping[str, Any]] = (),
    auth: str = "shop",
    webhook_retry_delays: Iterable[float] | None = None,
    expect_unrouted: bool | Iterable[str] = False,
) -> PostscriptMock: ...


def mock_postscript(
    func: Callable[..., R] | None = None,
    /,
    *,
    secret_key: str = DEFAULT_SECRET_KEY,
    rate_limit: float = 15.0,
    subscribers: Iterable[Mapping[str, Any]] = (),
    faults: Mapping[str, Any] | None = None,
    base_url: str = POSTSCRIPT_API,
    assert_all_mocked: bool = True,
    pass_through: Iterable[str] = (),
    strict: bool = False,
    shops: Iterable[Mapping[str, Any]] = (),
    partners: Iterable[Mapping[str, Any]] | None = None,
    keywords: Iterable[str | Mapping[str, Any]] = (),
    auth: str = "shop",
    webhook_retry_delays: Iterable[float] | None = None,
    expect_unrouted: bool | Iterable[str] = False,
) -> PostscriptMock | Callable[..., R]:
    """Serve https://api.postscript.io from a fresh in-process emulator, to httpx, requests and
    aiohttp in this process.

    `with mock_postscript(...) as postscript:` yields the `Postscript` handle;
    `@mock_postscript` and `@mock_postscript(...)` decorate sync and async
    functions. The options are those of `@pytest.mark.postscript`
    (emulator/testing/options.py): the key, the rate limit (15/s as
    Postscript; 0 = off), subscribers to seed, faults, and what happens to
    requests for other hosts.
    """
    shops = tuple(shops)
    options = EmulatorOptions.merge(
        [
            {
                **({} if shops else {"secret_key": secret_key}),  # with shops: shops[0]'s
                "rate_limit": rate_limit,
                "subscribers": subscribers,
                "faults": faults or {},
                "base_url": base_url,
                "assert_all_mocked": assert_all_mocked,
                "pass_through": pass_through,
                "strict": strict,
                "auth": auth,
                "expect_unrouted": expect_unrouted,
                **({"shops": shops} if shops else {}),
                **({"partners": partners} if partners is not None else {}),
                **({"keywords": keywords} if keywords else {}),
                **(
                    {"webhook_retry_delays": webhook_retry_delays}
                    if webhook_retry_delays is not None
                    else {}
                ),
            }
        ]
    )
    mock = PostscriptMock(options)
    return mock if func is None else mock(func)
