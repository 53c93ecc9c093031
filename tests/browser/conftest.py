"""The browser tests' fixtures: a real ``roost serve`` of ``browser_app`` and headless
chromium driven by selenium through Debian's /usr/bin/chromedriver (``make test-browser``
installs both; selenium downloads nothing)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reliability"))  # serve_process, shared with those tests

from serve_process import ServeProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "browser-token-7c6b5a49"
WINDOW = (1280, 1000)


def start_server(directory: Path, *, guarded: bool) -> ServeProcess:
    """``roost serve`` of ``browser_app`` in ``directory``, behind ``TOKEN`` if ``guarded``."""
    from browser_app import CONFIG

    shutil.copy(HERE / "browser_app.py", directory / "browser_app.py")
    http = '[http]\ninternal_token = "ADMIN_KEY"' if guarded else ""
    (directory / "roost.toml").write_text(CONFIG.format(token=TOKEN, http=http))
    return ServeProcess(directory, directory / "serve.log")


def open_browser() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should it run, fetches nothing
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: run `make test-browser`, which installs them")
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


def _served(tmp_path_factory: pytest.TempPathFactory, name: str, *, guarded: bool) -> Iterator[ServeProcess]:
    server = start_server(tmp_path_factory.mktemp(name), guarded=guarded)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    yield from _served(tmp_path_factory, "open", guarded=False)


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    yield from _served(tmp_path_factory, "guarded", guarded=True)
