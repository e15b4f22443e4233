"""Contract tests: instant retries, and a run that fails when a contract is never exercised.

Every `replay(...)` block already fails when a contract it names goes unused.
On top of that, when the client's tests (`test_client_*.py`) all run, the
session fails if some contract in `contracts/recorded/` was never answered
by any of them — a contract nobody replays is a promise nobody checks.
Running a subset (`-k`, a node id, a single file) skips this session check.
Under pytest-xdist the workers report what they ran and exercised, and the
controller judges the union.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina

from postscript_audience_lab.contracts import load_contracts
from postscript_audience_lab.contracts.replay import exercised
from tests.contracts.replayed import RETRIES

HERE = Path(__file__).parent
CLIENT_TESTS = {path.name for path in HERE.glob("test_client_*.py")}


_collected_client_tests: set[str] = set()
_deselected_client_tests = False
_client_tests_to_run: set[str] = set()
_client_tests_run: set[str] = set()


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """stamina's testing switch: no backoff sleeps, and a few attempts."""
    with stamina.set_testing(True, attempts=RETRIES):
        yield


def _is_client_test(item: pytest.Item) -> bool:
    return item.path.parent == HERE and item.path.name in CLIENT_TESTS


@pytest.hookimpl(trylast=True)  # after deselection
def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        if _is_client_test(item):
            _collected_client_tests.add(item.path.name)
            _client_tests_to_run.add(item.nodeid)


def pytest_runtest_logfinish(nodeid: str) -> None:
    if nodeid in _client_tests_to_run:
        _client_tests_run.add(nodeid)


def pytest_deselected(items: list[pytest.Item]) -> None:
    global _deselected_client_tests
    if any(_is_client_test(item) for item in items):
        _deselected_client_tests = True


def unexercised_contracts(seen: set[str] | None = None) -> list[str]:
    """Contracts the client's tests must replay but none did."""
    must = {c.name for c in load_contracts() if c.replay_skip_reason is None}
    return sorted(must - (exercised() if seen is None else seen))


# Under pytest-xdist each worker runs some of the client's tests: the workers
# report what they ran and exercised, and the controller judges the union.
_from_workers: dict[str, set[str]] = {"to_run": set(), "run": set(), "exercised": set()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    report = node.workeroutput.get("client_tests")
    if report is None or not report["complete_collection"]:
        return
    for key in _from_workers:
        _from_workers[key].update(report[key])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: the controller judges
        worker_output["client_tests"] = {
            "complete_collection": _complete_collection(session),
            "to_run": sorted(_client_tests_to_run),
            "run": sorted(_client_tests_run),
            "exercised": sorted(exercised()),
        }
        return
    missing = _missing(session)
    if not missing:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"contracts never exercised by the client's tests: {', '.join(missing)}"
    if reporter is not None:
        reporter.write("\n")
        reporter.write_sep("=", f"FAILED: {message}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _complete_collection(session: pytest.Session) -> bool:
    """Whether this run collected all the client's tests and selected no subset of them."""
    if _collected_client_tests != CLIENT_TESTS or _deselected_client_tests:
        return False
    return not (session.config.option.keyword or any("::" in a for a in session.config.args))


def _missing(session: pytest.Session) -> list[str]:
    if _from_workers["to_run"]:  # xdist: every client test ran on some worker
        if _from_workers["run"] != _from_workers["to_run"]:
            return []
        return unexercised_contracts(_from_workers["exercised"])
    if not _complete_collection(session) or _client_tests_run != _client_tests_to_run:
        return []
    return unexercised_contracts()
