"""Contract tests: instant retries, and a run that fails when a contract is never exercised.

Every `replay(...)` block already fails when a contract it names goes unused.
On top of that, when the client's tests (`test_client_*.py`) all run, the
session fails if some contract in `contracts/recorded/` was never answered
by any of them — a contract nobody replays is a promise nobody checks.
Running a subset (`-k`, a node id, a single file) skips this session check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina

from contracts import load_contracts
from contracts.replay import exercised
from tests.contracts.replayed import RETRIES

HERE = Path(__file__).parent
CLIENT_TESTS = {path.name for path in HERE.glob("test_client_*.py")}


_collected_client_tests: set[str] = set()
_deselected_client_tests = False


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """stamina's testing switch: no backoff sleeps, and a few attempts."""
    with stamina.set_testing(True, attempts=RETRIES):
        yield


def _is_client_test(item: pytest.Item) -> bool:
    return item.path.parent == HERE and item.path.name in CLIENT_TESTS


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _collected_client_tests.update(item.path.name for item in items if _is_client_test(item))


def pytest_deselected(items: list[pytest.Item]) -> None:
    global _deselected_client_tests
    if any(_is_client_test(item) for item in items):
        _deselected_client_tests = True


def unexercised_contracts() -> list[str]:
    """Contracts the client's tests must replay but none did."""
    must = {c.name for c in load_contracts() if c.replay_skip_reason is None}
    return sorted(must - exercised())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _collected_client_tests != CLIENT_TESTS or _deselected_client_tests:
        return
    if session.config.option.keyword or any("::" in arg for arg in session.config.args):
        return
    missing = unexercised_contracts()
    if not missing:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"contracts never exercised by the client's tests: {', '.join(missing)}"
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", f"FAILED: {message}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
