"""The web inbox at /_emulator/ui, in process: every page is valid HTML that names no other
host, what people typed is shown as text, searches, filters, the reply box, settings and
the confirmed reset. tests/browser/ drives it in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import html5lib
import httpx
import pytest
from starlette.testclient import TestClient

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app

UI = "/_emulator/ui"
AUTH = {"Authorization": "Bearer sk_test_pslab"}
HOSTILE = "<script>alert('x')</script>"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(EmulatorConfig(rate_limit_rps=0))) as test_client:
        yield test_client


def seed(client: TestClient, *people: dict[str, object]) -> list[str]:
    answer = client.post("/_emulator/subscribers", json={"subscribers": list(people)})
    assert answer.status_code == 200, answer.text
    return [s["id"] for s in answer.json()["subscribers"]]


class _Addresses(HTMLParser):
    """Every URL the page would load or go to: href, src, action, formaction, and url(...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction", "srcset", "data") and value:
                self.urls.append(value)


def assert_valid_and_local(text: str) -> None:
    html5lib.HTMLParser(strict=True).parse(text)  # raises on the first parse error
    parser = _Addresses()
    parser.feed(text)
    parser.urls.extend(re.findall(r"url\(([^)]*)\)", text))
    parser.urls.extend(re.findall(r"(?:fetch|import)\(\s*['\"]([^'\"]+)", text))
    assert parser.urls, "expected the page to link somewhere"
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme, f"{url} leaves the emulator"
        assert not parts.netloc, f"{url} leaves the emulator"


def test_every_page_is_valid_html_that_loads_nothing_from_another_host(client: TestClient) -> None:
    (subscriber_id,) = seed(
        client, {"phone_number": "+14155550100", "properties": {"Segment Audiences": ["vip"]}}
    )
    client.post("/api/v2/events", json={"type": "order", "subscriber_id": subscriber_id},
                headers=AUTH)  # fmt: skip
    pages = ["", "?q=415", f"/subscribers/{subscriber_id}", "/subscribers/s_nobody",
             "/journal", "/journal?status=4xx&fault=none&method=GET&path=me", "/webhooks",
             "/settings", "/reset"]  # fmt: skip
    for page in pages:
        answer = client.get(UI + page)
        assert answer.status_code in (200, 404), page
        assert answer.headers["content-type"].startswith("text/html"), page
        assert_valid_and_local(answer.text)


def test_what_a_subscriber_holds_is_shown_as_text_never_as_markup(client: TestClient) -> None:
    (subscriber_id,) = seed(
        client,
        {"phone_number": "+14155550100", "email": "a@example.com",
         "properties": {HOSTILE: HOSTILE, "Segment Audiences": [HOSTILE]}, "tags": [HOSTILE]},
    )  # fmt: skip
    client.post("/_emulator/inbound", json={"phone_number": "+14155550100", "body": HOSTILE})
    for page in ("", f"/subscribers/{subscriber_id}", "/webhooks"):
        text = client.get(UI + page).text
        assert "<script>alert" not in text, page
        assert_valid_and_local(text)
    detail = client.get(f"{UI}/subscribers/{subscriber_id}").text
    assert detail.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") >= 3


@pytest.mark.parametrize("spelling", ["(415) 555-0100", "415.555.0100", "+1 415 555 0100", "0100"])
def test_a_phone_in_any_spelling_finds_the_subscriber(client: TestClient, spelling: str) -> None:
    seed(client, {"phone_number": "+14155550100"}, {"phone_number": "+14155550199"})
    text = client.get(UI, params={"q": spelling}).text
    assert "+14155550100" in text
    assert "+14155550199" not in text


def test_an_email_search_matches_part_of_it_in_any_case(client: TestClient) -> None:
    seed(client, {"phone_number": "+14155550100", "email": "Ada@Example.com"},
         {"phone_number": "+14155550199", "email": "bob@example.com"})  # fmt: skip
    text = client.get(UI, params={"q": "ada@EXAMPLE"}).text
    assert "Ada@Example.com" in text
    assert "bob@example.com" not in text


def test_the_reply_box_texts_the_shop_and_the_thread_reads_both_ways(client: TestClient) -> None:
    (subscriber_id,) = seed(client, {"phone_number": "+14155550100"})
    sent = client.post("/api/v2/message_requests", headers=AUTH,
                       json={"subscriber_id": subscriber_id, "body": "Your order shipped",
                             "category": "transactional"})  # fmt: skip
    assert sent.status_code < 300, sent.text
    answer = client.post(f"{UI}/subscribers/{subscriber_id}/reply", data={"body": "STOP"},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    page = client.get(answer.headers["location"]).text
    subscriber = client.get(f"/api/v2/subscribers/{subscriber_id}", headers=AUTH).json()
    assert subscriber["subscriptions"]["transactional"]["can_send"] is False
    assert "opted out" in page
    assert page.index("Your order shipped") < page.index(">STOP<")


def test_a_form_posted_from_another_site_is_refused(client: TestClient) -> None:
    seed(client, {"phone_number": "+14155550100"})
    answer = client.post(f"{UI}/reset", headers={"Origin": "https://elsewhere.example"})
    assert answer.status_code == 403
    assert len(client.get("/_emulator/state").json()["subscribers"]) == 1


def test_reset_asks_first_and_forgets_after(client: TestClient) -> None:
    seed(client, {"phone_number": "+14155550100"})
    question = client.get(f"{UI}/reset")
    assert "Yes, reset everything" in question.text
    assert len(client.get("/_emulator/state").json()["subscribers"]) == 1
    client.post(f"{UI}/reset")
    assert client.get("/_emulator/state").json()["subscribers"] == []


def test_settings_change_the_faults_and_refuse_what_is_out_of_range(client: TestClient) -> None:
    form = {"error_rate": "0.5", "error_statuses": "503, 502", "latency_min_ms": "0",
            "latency_max_ms": "0", "timeout_rate": "0", "timeout_ms": "3000",
            "rate_limit_rps": "7", "seed": "4"}  # fmt: skip
    assert client.post(f"{UI}/settings", data=form).status_code == 200
    faults = client.get("/_emulator/faults").json()
    assert faults["error_rate"] == 0.5
    assert faults["error_statuses"] == [503, 502]
    assert faults["rate_limit_rps"] == 7
    refused = client.post(f"{UI}/settings", data={**form, "error_rate": "2"})
    assert refused.status_code == 400
    assert 'role="alert"' in refused.text
    assert client.get("/_emulator/faults").json()["error_rate"] == 0.5


def test_the_journal_filters_by_method_path_status_and_fault(client: TestClient) -> None:
    client.get("/api/v2/me", headers=AUTH)
    client.get("/api/v2/subscribers/s_nobody", headers=AUTH)
    client.put("/_emulator/faults", json={"error_rate": 1, "error_statuses": [503]})
    client.post("/api/v2/events", json={"type": "x"}, headers=AUTH)

    def rows(**params: str) -> list[tuple[str, str]]:
        text = client.get(f"{UI}/journal", params=params).text
        return re.findall(r"<tr><td>[^<]*</td><td>(\w+)</td><td>([^<]*)</td>", text)

    assert len(rows()) == 3
    assert rows(status="404") == [("GET", "/api/v2/subscribers/s_nobody")]
    assert rows(fault="error") == [("POST", "/api/v2/events")]
    assert rows(method="GET", path="me") == [("GET", "/api/v2/me")]
    assert rows(status="2xx") == [("GET", "/api/v2/me")]


def test_the_shop_switcher_shows_each_shops_subscribers(client: TestClient) -> None:
    shops = {"shops": [{"id": "shop_a", "secret_key": "sk_a"},
                       {"id": "shop_b", "secret_key": "sk_b"}], "partners": []}  # fmt: skip
    assert client.put("/_emulator/shops", json=shops).status_code == 200
    client.post(
        "/_emulator/subscribers",
        json={"shop": "shop_b", "subscribers": [{"phone_number": "+14155550177"}]},
    )
    assert "+14155550177" not in client.get(UI).text
    page = client.get(UI, params={"shop": "shop_b"}).text
    assert "+14155550177" in page
    assert '<select id="shop-switch" name="shop">' in page
    assert_valid_and_local(page)


def test_the_live_version_changes_when_an_api_call_lands(client: TestClient) -> None:
    before = client.get(f"{UI}/live").text
    assert client.get(f"{UI}/live").text == before
    client.get("/api/v2/me", headers=AUTH)
    assert client.get(f"{UI}/live").text != before


def test_the_inbox_is_not_journaled_nor_authenticated(client: TestClient) -> None:
    assert httpx.codes.is_success(client.get(UI).status_code)
    assert client.get("/_emulator/requests").json()["requests"] == []


def test_the_journals_pages_keep_its_filters(client: TestClient) -> None:
    for _ in range(101):
        client.get("/api/v2/me", headers=AUTH)
    first = client.get(f"{UI}/journal", params={"path": "/me", "method": "GET"})
    assert first.status_code == 200
    (older,) = re.findall(r'<a rel="next" href="([^"]+)"', first.text)
    assert "path=%2Fme" in older
    assert "method=GET" in older
    second = client.get(older.replace("&amp;", "&"))
    assert "101 found · page 2 of 2" in second.text
