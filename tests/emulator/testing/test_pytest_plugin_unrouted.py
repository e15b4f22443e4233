"""The pytest plugin's guard on what leaves the test: a request no route serves, a declared
expected one, and the real Postscript kept out of reach whatever the client.

Each test writes a small test suite of the kind a user would and runs it with pytester.
"""

from __future__ import annotations

import pytest

from tests.emulator.testing.test_pytest_plugin import HTTP

pytest_plugins = ["pytester"]


def test_a_request_no_route_serves_fails_the_test_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HTTP
        + """
def test_calls_another_host(mock_postscript):
    httpx.post("https://hooks.example.com/shipped", json={})
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UnroutedRequest: mock_postscript has no route for POST "
            "https://hooks.example.com/shipped: it serves https://api.postscript.io only.*",
        ]
    )
    assert "carried on" not in result.stdout.str()  # no second report for the same request


def test_a_swallowed_unrouted_request_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HTTP
        + """
def test_swallows_it(mock_postscript):
    try:
        httpx.get("https://hooks.example.com/ping")
    except Exception:
        pass  # the code under test logs and carries on

def test_other_hosts_through_options_pass(mock_postscript, respx_mock):
    respx_mock.get("https://hooks.example.com/ping").respond(204)
    assert httpx.get("https://hooks.example.com/ping").status_code == 204
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_swallows_it*",
            "*sent 1 request(s) that mock_postscript does not route, and carried on: "
            "GET https://hooks.example.com/ping*",
        ]
    )


def test_the_teardown_report_is_printed_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HTTP
        + """
import pytest

from tests.emulator.testing.test_pytest_plugin import HTTP

pytest_plugins = ["pytester"]
from postscript_audience_lab.emulator.testing.mock import UnroutedRequest

def test_expects_it_undeclared(mock_postscript):
    with pytest.raises(UnroutedRequest):
        httpx.get("https://hooks.example.com/ping")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rN")  # no summary repeating it
    result.assert_outcomes(passed=1, errors=1)
    report = result.stdout.str().split(" ERRORS ", 1)[1]
    assert report.count("carried on: GET https://hooks.example.com/ping") == 1
    assert "During handling" not in result.stdout.str()


def test_expected_unrouted_requests_are_declared_with_a_marker_option(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HTTP
        + """
import pytest, requests
from postscript_audience_lab.emulator.testing.mock import UnroutedRequest

@pytest.mark.postscript(expect_unrouted=True)
def test_expects_it(mock_postscript):
    with pytest.raises(UnroutedRequest):
        httpx.get("https://hooks.example.com/ping")
    with pytest.raises(UnroutedRequest):
        requests.get("https://hooks.example.com/ping")

@pytest.mark.postscript(expect_unrouted=["https://hooks.example.com"])
def test_expects_that_host_only(mock_postscript):
    with pytest.raises(UnroutedRequest):
        httpx.get("https://hooks.example.com/ping")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("fixture", ["postscript", "mock_postscript", "postscript_server"])
def test_every_fixture_keeps_the_real_postscript_out_of_reach(
    pytester: pytest.Pytester, fixture: str
) -> None:
    pytester.makepyfile(
        f"""
import urllib.request, pytest
from postscript_audience_lab.emulator.testing.guard import RealPostscriptBlocked

@pytest.mark.postscript(expect_unrouted=True)
def test_blocked({fixture}):
    with pytest.raises(RealPostscriptBlocked, match="the {fixture} fixture is active"):
        urllib.request.urlopen("https://api.postscript.io/api/v2/me")

def test_swallowed({fixture}):
    try:
        urllib.request.urlopen("https://api.postscript.io/api/v2/me")
    except Exception:
        pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_swallowed*"])
    assert (
        result.stdout.str().count("api.postscript.io. Route its client")
        + result.stdout.str().count("carried on: a DNS lookup")
        >= 1
    )
