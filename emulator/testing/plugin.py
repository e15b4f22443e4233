"""The pytest plugin (entry point `pslab`; `-p no:pslab` turns it off): a Postscript per test.

- `postscript`: a fresh in-process emulator, as a `Postscript` handle; give
  the code under test `postscript.client()` (or `.async_client()`);
- `mock_postscript`: that same emulator, with every httpx request for
  https://api.postscript.io routed to it, so code that hard-codes the real
  URL is served unchanged;
- `postscript_server`: an emulator on a real loopback port (`.base_url`,
  `.secret_key`) for clients that are not httpx or run in a subprocess; one
  server per session (per xdist worker), reset before each test.

Options (emulator/testing/options.py) come from `@pytest.mark.postscript(...)`
on the test, its class or its module (the closest wins, option by option)
and from an indirect parameter of any of the three fixtures (a dict), which
wins over markers.

Loading this module imports only pytest: the emulator, its web stack, httpx
and respx load when a test first asks for one of the fixtures.
"""

from __future__ import annotations

import importlib
from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from postscript_audience_lab.emulator.testing.handle import Postscript
    from postscript_audience_lab.emulator.testing.options import EmulatorOptions
    from postscript_audience_lab.emulator.testing.server import ServerPool

__all__ = [
    "mock_postscript",
    "postscript",
    "postscript_server",
    "pytest_configure",
    "pytest_runtest_makereport",
]

MARKER = "postscript"
FIXTURES = ("postscript", "mock_postscript", "postscript_server")
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(secret_key=..., rate_limit=..., subscribers=[...], faults={{...}}, "
        "base_url=..., assert_all_mocked=..., pass_through=[...], strict=..., shops=[...], "
        "partners=[...], keywords=[...], auth='shop'|'partner', webhook_retry_delays=[...], "
        "expect_unrouted=True|[...]): set up the "
        "Postscript emulator of the postscript, mock_postscript and postscript_server fixtures",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Keep each phase's report, so a fixture's teardown knows whether the test passed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def _passed(item: pytest.Item) -> bool:
    report = item.stash.get(_REPORTS, {}).get("call")
    return report is not None and report.passed


def _options(request: pytest.FixtureRequest) -> EmulatorOptions:
    from postscript_audience_lab.emulator.testing.options import EmulatorOptions, OptionError

    layers: list[Mapping[str, Any]] = []
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # farthest first
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{MARKER} takes keyword options only, e.g. "
                f"@pytest.mark.{MARKER}(rate_limit=0); got {marker.args!r}",
                pytrace=False,
            )
        layers.append(marker.kwargs)
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    for name in FIXTURES:
        if name in params:
            if not isinstance(params[name], Mapping):
                pytest.fail(
                    f"an indirect parameter of {name} must be a dict of options, e.g. "
                    f'{{"rate_limit": 0}}; got {params[name]!r}',
                    pytrace=False,
                )
            layers.append(params[name])
    try:
        return EmulatorOptions.merge(layers)
    except OptionError as error:
        pytest.fail(f"@pytest.mark.{MARKER}: {error}", pytrace=False)


DISTRIBUTION = "postscript-audience-lab"
# What the fixtures import when they run: respx, starlette, uvicorn and httpx come with them.
_FIXTURE_MODULES = (
    "postscript_audience_lab.emulator.testing.handle",
    "postscript_audience_lab.emulator.testing.mock",
    "postscript_audience_lab.emulator.testing.server",
    "postscript_audience_lab.emulator.postscript.web.app",
)


def _require_emulator() -> None:
    """Load what the fixtures run on, or fail the test saying which package is missing.

    Everything here is a dependency of the distribution itself, so a missing one means a
    broken or partial install (say, `pip install --no-deps`): name it and the fix, rather
    than leave a traceback from deep inside the emulator.
    """
    for module in _FIXTURE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            missing = (error.name or "").partition(".")[0]
            if missing == _FIXTURE_MODULES[0].partition(".")[0]:
                raise  # a module of ours: a real bug, not a missing library
            break
    else:
        return
    pytest.fail(  # outside the except block: the message alone, no chained traceback
        f"the Postscript fixtures (pytest plugin {DISTRIBUTION}) need the package "
        f"{missing!r}, which is not installed; {DISTRIBUTION} depends on it: "
        f"pip install --force-reinstall {DISTRIBUTION}",
        pytrace=False,
    )


def _set_up(options: EmulatorOptions, postscript: Postscript) -> None:
    from postscript_audience_lab.emulator.testing.handle import EmulatorAdminError

    try:
        options.set_up(postscript)
    except EmulatorAdminError as error:
        pytest.fail(f"@pytest.mark.{MARKER}: {error}", pytrace=False)


@contextmanager
def _guarded(request: pytest.FixtureRequest, fixture: str) -> Iterator[None]:
    """No way to the real Postscript while the fixture is active (emulator/testing/guard.py);
    a blocked connection the code under test swallowed fails the test at teardown."""
    from postscript_audience_lab.emulator.testing.guard import blocking_real_postscript

    with blocking_real_postscript(f"the {fixture} fixture") as blocked:
        yield
    if blocked and _passed(request.node) and _options(request).expect_unrouted is not True:
        pytest.fail(
            f"the code under test tried to reach the real Postscript and carried on: "
            f"{'; '.join(blocked)}. Route its client to the {fixture} fixture's emulator.",
            pytrace=False,
        )


@pytest.fixture
def _postscript_in_process(request: pytest.FixtureRequest) -> Iterator[Postscript]:
    """The one in-process emulator `postscript` and `mock_postscript` share in a test."""
    _require_emulator()
    options = _options(request)
    with ExitStack() as guard:
        if "mock_postscript" not in request.fixturenames:  # which reports it itself
            guard.enter_context(_guarded(request, "postscript"))
        with options.in_process() as emulator:
            _set_up(options, emulator)
            yield emulator


@pytest.fixture
def postscript(_postscript_in_process: Postscript) -> Postscript:
    """A fresh in-process Postscript emulator; hand the code under test `postscript.client()`."""
    return _postscript_in_process


@pytest.fixture
def mock_postscript(
    request: pytest.FixtureRequest, _postscript_in_process: Postscript
) -> Iterator[Postscript]:
    """A fresh emulator answering every httpx request for https://api.postscript.io."""
    from postscript_audience_lab.emulator.testing.mock import PostscriptMock, UnroutedRequest

    mock = PostscriptMock(
        _options(request), _postscript_in_process, owner="the mock_postscript fixture"
    )
    yield mock.start()
    try:
        mock.stop(check=_passed(request.node))
    except UnroutedRequest as error:
        unrouted = str(error)
    else:
        return
    # Outside the except block: inside, pytest prints the message a second time, as the
    # exception the failure happened "during the handling of".
    pytest.fail(unrouted, pytrace=False)


@pytest.fixture(scope="session")
def _postscript_servers() -> Iterator[ServerPool]:
    _require_emulator()
    from postscript_audience_lab.emulator.testing.server import ServerPool

    pool = ServerPool()
    yield pool
    pool.close()


@pytest.fixture
def postscript_server(
    request: pytest.FixtureRequest, _postscript_servers: ServerPool
) -> Iterator[Postscript]:
    """An emulator on a real loopback port (`.base_url`), emptied and set up for this test."""
    options = _options(request)
    server = _postscript_servers.server(
        options.secret_key, strict=options.strict, webhook_retry_delays=options.webhook_retry_delays
    )
    server.reset()
    _set_up(options, server)
    with _guarded(request, "postscript_server"):
        yield server
