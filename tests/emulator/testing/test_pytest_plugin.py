"""The pytest plugin as a user meets it: test files run by pytester, with the plugin installed.

Each test writes a small test suite of the kind a user would, runs pytest on
it (in this process, or in a subprocess where the point is a fresh
interpreter: xdist workers, the cost of loading the plugin, `-p no:pslab`)
and reads the outcome and the output.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).parents[3] / "README.md"

HTTP = """
import httpx
API = "https://api.postscript.io/api/v2"
KEY = {"Authorization": "Bearer sk_test_pslab"}
"""


def test_postscript_is_a_fresh_in_process_emulator_for_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_first(postscript):
            ada = postscript.seed(phone_number="+15555550100")
            with postscript.client() as client:
                found = client.get("/api/v2/subscribers", params={"phone_number__eq": "5555550100"})
            assert found.json()["subscribers"][0]["id"] == ada.id
            assert postscript.base_url == "https://api.postscript.io"

        def test_second_starts_empty(postscript):
            assert postscript.subscribers == []
            assert postscript.requests == []
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_mock_postscript_serves_sync_and_async_code_that_calls_the_real_url(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HTTP
        + """
import pytest

def test_sync(mock_postscript):
    ada = mock_postscript.seed(phone_number="+15555550100")
    shipped = {"type": "Shipped", "subscriber_id": ada.id}
    answer = httpx.post(f"{API}/events", headers=KEY, json=shipped)
    assert answer.status_code == 202
    assert [e.subscriber_id for e in mock_postscript.events] == [ada.id]

@pytest.mark.anyio
async def test_async(mock_postscript):
    ada = mock_postscript.seed(email="ada@example.com")
    async with httpx.AsyncClient(headers=KEY) as client:
        answer = await client.patch(f"{API}/subscribers/{ada.id}", json={"properties": {"a": 1}})
    assert answer.status_code == 200
    assert mock_postscript.subscriber(email="ada@example.com").properties == {"a": 1}

def test_shares_the_emulator_of_postscript(postscript, mock_postscript):
    assert mock_postscript is postscript
"""
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_postscript_server_is_one_server_per_session_reset_before_each_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import json, subprocess, sys

        SEEN = []

        def test_first(postscript_server):
            SEEN.append(postscript_server.base_url)
            postscript_server.seed(phone_number="+15555550100")
            postscript_server.faults(error_rate=1.0, seed=1)
            postscript_server.rate_limit(1)

        def test_second_sees_none_of_it_from_another_process(postscript_server):
            SEEN.append(postscript_server.base_url)
            assert postscript_server.subscribers == []
            assert postscript_server.fault_settings.error_rate == 0.0
            assert postscript_server.fault_settings.rate_limit_rps == 15.0
            script = (
                "import sys, urllib.request;"
                "request = urllib.request.Request(sys.argv[1] + '/api/v2/me',"
                " headers={'Authorization': 'Bearer ' + sys.argv[2]});"
                "print(urllib.request.urlopen(request).status)"
            )
            status = subprocess.run(
                [sys.executable, "-c", script, postscript_server.base_url,
                 postscript_server.secret_key],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout.strip()
            assert status == "200"
            assert [r.path for r in postscript_server.requests] == ["/api/v2/me"]

        def test_one_server(postscript_server):
            assert len(set(SEEN)) == 1
            assert SEEN[0].startswith("http://127.0.0.1:")
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_markers_set_the_options_and_the_closest_marker_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HTTP
        + """
import pytest

pytestmark = pytest.mark.postscript(secret_key="sk_module", rate_limit=0)

def test_module_options(postscript):
    assert postscript.secret_key == "sk_module"
    assert postscript.fault_settings.rate_limit_rps == 0.0

@pytest.mark.postscript(rate_limit=3)
class TestClass:
    @pytest.mark.postscript(
        subscribers=[{"phone_number": "+15555550100"}, {"email": "grace@example.com"}],
        faults={"error_rate": 1.0, "error_statuses": [503], "seed": 1},
    )
    def test_function_options(self, mock_postscript):
        assert mock_postscript.secret_key == "sk_module"
        assert mock_postscript.fault_settings.rate_limit_rps == 3.0
        assert len(mock_postscript.subscribers) == 2
        answer = httpx.get(f"{API}/me", headers={"Authorization": "Bearer sk_module"})
        assert answer.status_code == 503

    def test_server_takes_them_too(self, postscript_server):
        assert postscript_server.secret_key == "sk_module"
        assert postscript_server.fault_settings.rate_limit_rps == 3.0
"""
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=3)


def test_an_indirect_fixture_parameter_sets_options_over_the_markers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.postscript(rate_limit=5, secret_key="sk_marker")
        @pytest.mark.parametrize(
            "postscript", [{"rate_limit": 0}, {"rate_limit": 2, "secret_key": "sk_param"}],
            indirect=True,
        )
        def test_parameter(postscript):
            assert postscript.fault_settings.rate_limit_rps in (0.0, 2.0)
            unparametrized = postscript.fault_settings.rate_limit_rps == 0.0
            expected = "sk_marker" if unparametrized else "sk_param"
            assert postscript.secret_key == expected

        @pytest.mark.parametrize(
            "mock_postscript", [{"subscribers": [{"email": "a@b.co"}]}], indirect=True
        )
        def test_mock_parameter(mock_postscript):
            assert [s.email for s in mock_postscript.subscribers] == ["a@b.co"]
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_an_unknown_or_mistyped_option_fails_setup_saying_what_is_allowed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.postscript(rate_limt=0)
        def test_typo(postscript):
            pass

        @pytest.mark.postscript(faults={"eror_rate": 1})
        def test_fault_typo(mock_postscript):
            pass

        @pytest.mark.postscript(subscribers={"phone_number": "+15555550100"})
        def test_not_a_list(postscript_server):
            pass

        @pytest.mark.postscript(subscribers=[{"phone_number": "12"}])
        def test_refused_seed(postscript):
            pass

        @pytest.mark.postscript(0)
        def test_positional(postscript):
            pass

        @pytest.mark.postscript(base_url="https://api.postscript.io/api/v2")
        def test_not_an_origin(mock_postscript):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(
        [
            "*unknown Postscript emulator option 'rate_limt'; the options are secret_key, "
            "rate_limit, subscribers, faults, base_url, assert_all_mocked, pass_through, "
            "strict, shops, partners, keywords, auth, webhook_retry_delays, expect_unrouted",
            "*unknown fault 'eror_rate'; the faults are error_rate, *",
            "*subscribers must be a list of dicts*",
            "*subscribers.0.phone_number: must be a complete phone number*",
            "*takes keyword options only*",
            "*base_url must be an origin such as https://api.postscript.io, not*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_strict_shops_partner_auth_and_retry_options_set_up_every_fixture(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import socket
        import httpx
        import pytest

        SHOPS = [
            {"id": "shop_a", "name": "A", "secret_key": "sk_a"},
            {"id": "shop_b", "name": "B", "secret_key": "sk_b"},
        ]
        PARTNERS = [{"id": "partner_p", "name": "P", "key": "sk_partner_p"}]

        @pytest.mark.parametrize("fixture", ["postscript", "mock_postscript", "postscript_server"])
        @pytest.mark.postscript(strict=True, rate_limit=0)
        def test_strict(fixture, request):
            handle = request.getfixturevalue(fixture)
            with handle.client() as client:
                answer = client.get("/api/v2/subscribers", params={"colour": "red"})
            assert answer.status_code == 400

        @pytest.mark.parametrize("fixture", ["postscript", "postscript_server"])
        def test_lenient_by_default(fixture, request):
            handle = request.getfixturevalue(fixture)
            with handle.client() as client:
                answer = client.get("/api/v2/subscribers", params={"colour": "red"})
            assert answer.status_code == 200

        @pytest.mark.parametrize("fixture", ["postscript", "postscript_server"])
        @pytest.mark.postscript(shops=SHOPS, partners=PARTNERS, auth="partner")
        def test_shops_and_partner_auth(fixture, request):
            handle = request.getfixturevalue(fixture)
            assert handle.secret_key == "sk_a"
            with handle.client() as client:
                me = client.get("/api/v2/me").json()
                other = client.get(
                    "/api/v2/me", headers={"X-Postscript-Shop-Token": "sk_b"}
                ).json()
                alone = client.get(
                    "/api/v2/subscribers", headers={"X-Postscript-Shop-Token": ""}
                )
            assert client.headers["authorization"] == "Bearer sk_partner_p"
            assert (me["resource_id"], other["resource_id"]) == ("shop_a", "shop_b")
            assert alone.status_code in (401, 403)

        def test_the_next_server_test_has_the_default_shop_again(postscript_server):
            assert postscript_server.secret_key == "sk_test_pslab"
            with postscript_server.client() as client:
                assert client.get("/api/v2/me").json()["resource_id"] == "shop_pslab0emulator"

        @pytest.mark.postscript(webhook_retry_delays=[0, 0])
        def test_retry_delays(postscript):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
            with postscript.client() as client:
                client.post(
                    "/api/v2/webhooks",
                    json={"callback_url": url, "event": "shop.incoming_message"},
                )
            postscript.inbound_text("+15555550100", "hi")
            (delivery,) = postscript.wait_for_webhooks()
            assert len(delivery.attempts) == 3

        @pytest.mark.postscript(shops=[], auth="partners", strict="yes")
        def test_bad(postscript):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=9, errors=1)
    result.stdout.fnmatch_lines(["*strict must be True or False*"])


def test_the_keywords_option_gives_the_default_shop_more_keywords_in_every_fixture(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        SHOPS = [{"id": "shop_a", "secret_key": "sk_a", "keywords": [{"keyword": "SHOPWORD"}]}]

        @pytest.mark.parametrize("fixture", ["postscript", "mock_postscript", "postscript_server"])
        @pytest.mark.postscript(keywords=["WELCOME", {"keyword": "VIP2", "id": "kw_vip2"}])
        def test_keywords(fixture, request):
            handle = request.getfixturevalue(fixture)
            with handle.client() as client:
                listed = client.get("/api/v2/keywords").json()["keywords"]
                opted_in = client.post(
                    "/api/v2/subscribers",
                    json={"phone_number": "+15555550100", "keyword_id": "kw_vip2"},
                )
            assert [k["keyword"] for k in listed] == ["JOIN", "VIP", "WELCOME", "VIP2"]
            assert opted_in.status_code == 201
            handle.add_keyword("ADDED")

        @pytest.mark.postscript(shops=SHOPS, keywords=["WELCOME"])
        def test_with_shops(postscript):
            with postscript.client() as client:
                listed = client.get("/api/v2/keywords").json()["keywords"]
            assert [k["keyword"] for k in listed] == ["JOIN", "VIP", "SHOPWORD", "WELCOME"]

        def test_the_next_server_test_has_join_and_vip_only(postscript_server):
            with postscript_server.client() as client:
                listed = client.get("/api/v2/keywords").json()["keywords"]
            assert [k["keyword"] for k in listed] == ["JOIN", "VIP"]

        @pytest.mark.postscript(keywords="WELCOME")
        def test_a_word_not_a_list(postscript):
            pass

        @pytest.mark.postscript(keywords=["STOP"])
        def test_a_refused_keyword(postscript):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*keywords must be a list of keywords, e.g. *",
            "*shops.0.keywords.0.keyword: STOP confirms or opts out a subscriber*",
        ]
    )


@pytest.mark.slow
def test_each_xdist_worker_gets_a_server_of_its_own(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import json, os, pathlib, pytest

        @pytest.mark.parametrize("n", range(8))
        def test_clean_server(postscript_server, n, tmp_path_factory):
            assert postscript_server.subscribers == []
            postscript_server.seed(phone_number=f"+1555555010{n}")
            out = tmp_path_factory.getbasetemp().parent.parent / f"seen-{n}.json"
            seen = [os.environ["PYTEST_XDIST_WORKER"], postscript_server.base_url]
            out.write_text(json.dumps(seen))
        """
    )
    # Only xdist and this plugin, so that three interpreters start in seconds.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess(
        "-p",
        "xdist.plugin",
        "-p",
        "postscript_audience_lab.emulator.testing.plugin",
        "-n",
        "2",
        timeout=240,
    )
    result.assert_outcomes(passed=8)
    seen = [json.loads(path.read_text()) for path in pytester.path.rglob("seen-*.json")]
    assert len(seen) == 8
    workers = {worker: url for worker, url in seen}
    assert sorted(workers) == ["gw0", "gw1"]
    assert len(set(workers.values())) == 2
    assert all(url == workers[worker] for worker, url in seen)


def test_loading_the_plugin_loads_no_web_stack_and_no_http_library(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_was_imported(pytestconfig):
            plugin = "postscript_audience_lab.emulator.testing.plugin"
            assert pytestconfig.pluginmanager.has_plugin(plugin)
            heavy = {"starlette", "uvicorn", "httpx", "respx", "hypothesis"}
            assert heavy & set(sys.modules) == set()
        """
    )
    # Only this plugin: respx's and hypothesis's own plugins load their libraries.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess(
        "-p", "postscript_audience_lab.emulator.testing.plugin", timeout=120
    )
    result.assert_outcomes(passed=1)


def test_p_no_pslab_turns_the_plugin_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_wants_it(postscript):\n    pass\n")
    # The other plugins' libraries are slow to load and beside the point.
    others = ("hypothesispytest", "schemathesis", "pytest_cov")
    disabled = [arg for name in others for arg in ("-p", f"no:{name}")]
    result = pytester.runpytest_subprocess("-p", "no:pslab", *disabled, timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'postscript' not found*"])


@pytest.mark.parametrize("missing", ["respx", "starlette"])
def test_a_fixture_whose_library_is_missing_names_it_and_the_distribution(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    pytester.makeconftest(f"import sys\nsys.modules[{missing!r}] = None  # as if not installed\n")
    pytester.makepyfile("def test_wants_it(mock_postscript):\n    pass\n")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # respx's own plugin needs respx
    result = pytester.runpytest_subprocess(
        "-p", "postscript_audience_lab.emulator.testing.plugin", timeout=120
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*(pytest plugin postscript-audience-lab) need the package '{missing}', which is "
            "not installed*: pip install --force-reinstall postscript-audience-lab"
        ]
    )
    result.stdout.no_fnmatch_line("*During handling*")


def test_the_fixtures_and_the_marker_are_documented(pytester: pytest.Pytester) -> None:
    fixtures = pytester.runpytest("--fixtures")
    fixtures.stdout.fnmatch_lines(
        [
            "*fixtures defined from postscript_audience_lab.emulator.testing.plugin*",
            "postscript -- *",
            "*fresh in-process Postscript emulator*",
            "mock_postscript -- *",
            "*every httpx request for https://api.postscript.io*",
            "postscript_server -- *",
            "*real loopback port*",
        ]
    )
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.postscript(secret_key=*"])


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Test your own Postscript integration\n")[
        1
    ]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section starts with a Python example"
    return match.group(1)


def test_the_readme_example_is_ten_lines_and_passes_as_written(pytester: pytest.Pytester) -> None:
    example = readme_example()
    assert len(example.strip().splitlines()) <= 12
    pytester.makepyfile(test_readme=example)
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "pslab"]
    assert plugin.value == "postscript_audience_lab.emulator.testing.plugin"
    assert sys.modules.get(plugin.value) is not None  # this very run loaded it
