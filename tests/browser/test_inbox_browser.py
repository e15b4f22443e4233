"""The web inbox in a real browser (headless Chromium): find a person, reply STOP from the
page, and see it everywhere; search a phone as people write it. Screenshots are kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.testing import Postscript
from tests.browser.conftest import skip_without_chromium

skip_without_chromium()
# Selenium only once the module knows it is there; the imports wait for the line above.
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

UI = "/_emulator/ui"


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """A webhook receiver on loopback that answers 200."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def wait_for_text(driver: WebDriver, text: str, timeout: float = 10) -> None:
    """Until the page's main part shows `text` (a page being left or swapped is retried)."""
    WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: text in d.find_element(By.TAG_NAME, "main").text
    )


def test_reply_stop_from_the_page_opts_the_person_out_and_shows_everywhere(
    postscript_server: Postscript, browser: WebDriver, receiver: str, screenshots: Path
) -> None:
    postscript = postscript_server
    audiences_and_markup = {"Segment Audiences": ["vip"], "Colour": "<b>teal</b>"}
    ada = postscript.seed(
        phone_number="+14155550100", email="ada@example.com", properties=audiences_and_markup
    )
    postscript.seed(phone_number="+14155550199", email="bob@example.com")
    api = httpx.Client(base_url=postscript.base_url, headers=postscript.auth_headers())
    api.post("/api/v2/webhooks",
             json={"callback_url": receiver, "event": "shop.subscriber.opt_out"}
             ).raise_for_status()  # fmt: skip
    api.post("/api/v2/message_requests",
             json={"subscriber_id": ada.id, "body": "Your order shipped!",
                   "category": "transactional"}).raise_for_status()  # fmt: skip

    browser.get(postscript.base_url + UI)
    search = browser.find_element(By.ID, "q")
    search.send_keys("ada@example.com", Keys.ENTER)  # the keyboard, not the mouse
    wait_for_text(browser, "1 found")
    browser.find_element(By.LINK_TEXT, "+14155550100").click()
    wait_for_text(browser, "Your order shipped!")
    assert "<b>teal</b>" in browser.find_element(By.TAG_NAME, "main").text  # text, not markup
    browser.save_screenshot(str(screenshots / "subscriber-before-stop.png"))

    reply = browser.find_element(By.ID, "reply")
    label = browser.find_element(By.CSS_SELECTOR, "label[for=reply]")
    assert "Text the shop as +14155550100" in label.text
    reply.send_keys("STOP")
    browser.find_element(By.XPATH, "//button[text()='Send as subscriber']").click()
    wait_for_text(browser, "opted out")
    thread = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "ol.thread li")]
    assert thread[0].startswith("Your order shipped!")
    assert thread[-1].startswith("STOP")
    browser.save_screenshot(str(screenshots / "subscriber-after-stop.png"))

    subscriber = api.get(f"/api/v2/subscribers/{ada.id}").json()
    assert subscriber["subscriptions"]["promotional"]["can_send"] is False
    assert subscriber["subscriptions"]["transactional"]["can_send"] is False
    deliveries = postscript.wait_for_webhooks()
    (delivery,) = [d for d in deliveries if d.event == "shop.subscriber.opt_out"]
    assert delivery.state == "delivered"

    browser.find_element(By.LINK_TEXT, "Journal").click()
    wait_for_text(browser, "/api/v2/message_requests")
    assert "/api/v2/webhooks" in browser.find_element(By.TAG_NAME, "main").text
    browser.save_screenshot(str(screenshots / "journal.png"))
    browser.find_element(By.LINK_TEXT, "Webhooks").click()
    wait_for_text(browser, "shop.subscriber.opt_out delivered")
    browser.save_screenshot(str(screenshots / "webhooks.png"))

    # Live: an API call made while the journal is open appears without a reload.
    browser.find_element(By.LINK_TEXT, "Journal").click()
    wait_for_text(browser, "/api/v2/message_requests")
    marker = browser.find_element(By.TAG_NAME, "h1")
    api.get("/api/v2/subscribers/s_live_update_probe")
    wait_for_text(browser, "/api/v2/subscribers/s_live_update_probe")
    assert marker.is_displayed()  # the same page, updated in place: no reload happened
    api.close()


def test_a_phone_written_as_people_write_it_finds_the_subscriber(
    postscript_server: Postscript, browser: WebDriver, screenshots: Path
) -> None:
    postscript_server.seed(phone_number="+14155550100")
    postscript_server.seed(phone_number="+14155550123")
    browser.get(postscript_server.base_url + UI)
    browser.find_element(By.ID, "q").send_keys("(415) 555-0100", Keys.ENTER)
    wait_for_text(browser, "1 found")
    text = browser.find_element(By.TAG_NAME, "main").text
    browser.save_screenshot(str(screenshots / "search-by-phone.png"))
    assert "+14155550100" in text
    assert "+14155550123" not in text
