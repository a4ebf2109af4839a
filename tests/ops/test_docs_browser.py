"""/docs and /redoc in headless Chromium against a real server, with the network cut off.

Chromium resolves every host name but the ones mapped below to nothing, and the test reads
every request the page made from the DevTools log: the docs must render from the service
alone. `UPDATE_SCREENSHOT=1` saves the Swagger UI screenshot as docs/swagger-ui.png, the
README's; otherwise it goes to a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.core.config import Settings
from tests.ops.server import Server, running_server

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshot is rewritten only when asked: a test run leaves the checkout as it was.
README_SCREENSHOT = ROOT / "docs" / "swagger-ui.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")  # Debian: /usr/bin/chromedriver
# A name that is not "localhost": Swagger UI hides its online validator badge (a request to
# validator.swagger.io) for local addresses only, so this is what a deployed service sees.
PUBLIC_NAME = "catalog.example"
RENDER_TIMEOUT = 30
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium is not installed: apt-get install chromium chromium-driver "
        "(make test does it when apt is available)",
    ),
]


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(settings, tmp_path_factory.mktemp("docs-server")) as running:
        yield running


@pytest.fixture(scope="module")
def operation_count(server: Server) -> int:
    schema = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    return sum(
        1
        for operations in schema["paths"].values()
        for method in operations
        if method in HTTP_METHODS
    )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1400",
        # The network is cut: only the loopback address and PUBLIC_NAME (mapped to it) resolve.
        f"--host-resolver-rules=MAP {PUBLIC_NAME} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(RENDER_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page sent a request for, from the DevTools network events.

    A request the page's Content-Security-Policy blocked never leaves the browser (ReDoc's
    sidebar logo points at a CDN; `img-src 'self' data:` stops it), so it is not counted.
    """
    sent: dict[str, str] = {}
    blocked: set[str] = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            sent[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            blocked.add(params["requestId"])
    return [url for request_id, url in sent.items() if request_id not in blocked]


def foreign(urls: list[str], allowed_host: str) -> list[str]:
    """URLs that would leave the machine: any network scheme to another host."""
    return [
        url
        for url in urls
        if urlsplit(url).scheme in ("http", "https", "ws", "wss")
        and urlsplit(url).hostname != allowed_host
    ]


def asset_urls(driver: Any) -> list[str]:
    """The scripts and stylesheets the rendered page loads."""
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('script[src], link[rel=stylesheet]')]"
            ".map(e => e.src || e.href)"
        )
    )


def wait_for(driver: Any, condition: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, RENDER_TIMEOUT, poll_frequency=0.1).until(condition)


def test_swagger_ui_renders_every_operation_offline(
    browser: Any, server: Server, operation_count: int, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server.base_url}/docs")
    wait_for(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= operation_count
    )

    list_products = browser.find_element(
        By.XPATH,
        "//div[contains(@class, 'opblock-get')]"
        "[.//*[contains(@class, 'opblock-summary-path') and @data-path='/products']]",
    )
    assert list_products.is_displayed()
    method = list_products.find_element(By.CSS_SELECTOR, ".opblock-summary-method")
    assert method.text == "GET"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) == operation_count

    urls = requested_urls(browser)
    assert f"{server.base_url}/openapi.json" in urls
    assert any(url.endswith("/swagger-ui-bundle.js") for url in urls)
    assert foreign(urls, "127.0.0.1") == []
    assert foreign(asset_urls(browser), "127.0.0.1") == []

    screenshot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "ui.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_swagger_ui_under_a_public_name_fetches_nothing_else(
    browser: Any, server: Server, operation_count: int
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"http://{PUBLIC_NAME}:{server.port}/docs")
    wait_for(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= operation_count
    )

    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/products']")
    assert foreign(requested_urls(browser), PUBLIC_NAME) == []
    assert foreign(asset_urls(browser), PUBLIC_NAME) == []


def test_redoc_renders_every_operation_offline(
    browser: Any, server: Server, operation_count: int
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server.base_url}/redoc")
    operations = "[data-section-id^='operation/']"
    wait_for(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, operations)) >= operation_count,
    )

    assert browser.find_element(By.CSS_SELECTOR, "h1").text.startswith("Catalog service")
    urls = requested_urls(browser)
    assert any(url.endswith("/redoc.standalone.js") for url in urls)
    assert foreign(urls, "127.0.0.1") == []
    assert foreign(asset_urls(browser), "127.0.0.1") == []
