"""Headless Chromium for the web inbox's browser tests, driven by Selenium.

Selenium with the distribution's chromedriver rather than Playwright: chromedriver comes from
the same package source as the chromium it drives, so their versions always match, and
Selenium is told its path, so nothing is downloaded (Playwright pins its own browser build,
which cannot be fetched here, and talks to other Chromium versions on a best-effort basis).
Without chromium, chromedriver or selenium each test module skips (`skip_without_chromium`,
called at its top: a skip raised here, in a conftest, would end the whole run instead) and
says what to install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = os.environ.get("PSLAB_CHROMIUM") or shutil.which("chromium") or ""
CHROMEDRIVER = os.environ.get("PSLAB_CHROMEDRIVER") or shutil.which("chromedriver") or ""
INSTALL = "apt-get install -y chromium chromium-driver"


def skip_without_chromium() -> None:
    """Skip the calling test module unless Chromium, its driver and Selenium are all here."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(f"no chromium and chromedriver on PATH ({INSTALL})", allow_module_level=True)
    pytest.importorskip(
        "selenium", reason="selenium is not installed (pip install -e '.[browser]')"
    )


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where a test keeps its screenshots: its tmp dir, or PSLAB_SCREENSHOTS (the browser
    session sets .nox/screenshots) so that CI keeps them in one place."""
    folder = Path(os.environ.get("PSLAB_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
