"""The replay router: matching, ordering, and failing when a contract goes unused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from postscript_audience_lab.contracts.replay import (
    DEFAULT_BASE_URL,
    UNMATCHED_STATUS,
    ContractNotExercised,
    replay,
)

HERE = Path(__file__).parent


def get(path: str, **params: str) -> httpx.Response:
    with httpx.Client(base_url=DEFAULT_BASE_URL) as client:
        return client.get(path, params=params)


def test_a_named_contract_the_client_never_calls_fails_the_block() -> None:
    unused = r"never exercised: subscribers\.get"
    with pytest.raises(ContractNotExercised, match=unused), replay("me", "subscribers.get"):
        assert get("/api/v2/me").status_code == 200


def test_a_request_no_contract_matches_is_answered_599_and_fails_the_block() -> None:
    statuses: list[int] = []
    with pytest.raises(ContractNotExercised, match="no contract matched: GET"), replay("me"):
        statuses += [get("/api/v2/me").status_code, get("/api/v2/keywords").status_code]
    assert statuses == [200, UNMATCHED_STATUS]


def test_in_filters_match_repeated_or_comma_joined_values_in_any_order() -> None:
    with replay("subscribers.list.phone_in") as served:
        joined = get("/api/v2/subscribers", phone_number__in="+15555550111,+15555550100", page="1")
        with httpx.Client(base_url=DEFAULT_BASE_URL) as client:
            repeated = client.get(
                "/api/v2/subscribers",
                params=[("phone_number__in", "+15555550100"), ("phone_number__in", "+15555550111")],
            )
    assert joined.status_code == repeated.status_code == 200
    assert served.calls("subscribers.list.phone_in") == 2


def test_contracts_with_one_request_answer_in_the_order_named_and_the_last_repeats() -> None:
    with replay("me.rate_limited", "me"):
        statuses = [get("/api/v2/me").status_code for _ in range(3)]
    assert statuses == [429, 200, 200]


def test_a_body_of_another_shape_matches_no_contract() -> None:
    statuses: list[int] = []
    body = {"type": "Segment_Audience_Entered"}
    with (
        pytest.raises(ContractNotExercised, match=r"never exercised: events\.create"),
        replay("events.create"),
        httpx.Client(base_url=DEFAULT_BASE_URL) as client,
    ):
        statuses.append(client.post("/api/v2/events", json=body).status_code)
    assert statuses == [UNMATCHED_STATUS]


def _run_pytest_in(folder: Path, test_body: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(HERE / "conftest.py", folder / "conftest.py")
    (folder / "test_client_sample.py").write_text(textwrap.dedent(test_body))
    return subprocess.run(  # noqa: S603 (our own interpreter, fixed arguments)
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder)],
        cwd=folder,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # a faster start
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("names", "fails"),
    [(["me"], True), (None, False)],
    ids=["one-contract-used", "every-contract-used"],
)
def test_the_session_fails_when_the_client_tests_leave_a_contract_unexercised(
    tmp_path: Path, names: list[str] | None, fails: bool
) -> None:
    chosen = repr("ALL") if names is None else repr(names)
    result = _run_pytest_in(
        tmp_path,
        f"""
        import httpx
        from postscript_audience_lab.contracts import load_contracts
        from postscript_audience_lab.contracts.contract import fill
        from postscript_audience_lab.contracts.replay import DEFAULT_BASE_URL, Expectation, replay

        def test_sample():
            chosen = {chosen}
            pool = [c for c in load_contracts() if chosen == "ALL" or c.name in chosen]
            for contract in pool:
                expected = Expectation.of(contract)
                with replay(contract.name), httpx.Client(base_url=DEFAULT_BASE_URL) as client:
                    client.request(
                        contract.request.method,
                        expected.path,
                        params=[(k, v) for k, vs in expected.query.items() for v in vs],
                        json=fill(contract.request.json, contract.refs),
                    )
        """,
    )
    assert "1 passed" in result.stdout
    assert (result.returncode != 0) is fails
    assert ("contracts never exercised by the client's tests" in result.stdout) is fails
