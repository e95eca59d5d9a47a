"""The browser tests' stack: the demo's own loop (sandbox exchange, gateway with two unmodified ccxt bots, the
service with managed OPA) on loopback, and Debian's Chromium driven by Playwright. A failed test leaves a
screenshot of every page it had open under .keyguard/web-artifacts/<test name>/ (KEYGUARD_WEB_ARTIFACTS)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from keyguard.demo import DemoStack, demo_stack
from keyguard.tools import PROJECT_ROOT
from tests.servers import AlertReceiver

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("KEYGUARD_WEB_ARTIFACTS", PROJECT_ROOT / ".keyguard" / "web-artifacts"))
PHONE = {"width": 390, "height": 844}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The demo, checking every second; its runner bot never turns runaway here, and the drift is the test's to
    trigger (stack.drift())."""
    os.environ.setdefault("PLAYWRIGHT_BROWSERS_PATH", "0")  # never look for, or fetch, a bundled browser
    with AlertReceiver() as receiver, demo_stack(tmp_path_factory.mktemp("demo"), interval=1.0, port=0,
                                                 runaway_after=None, alert_url=receiver.url) as running:
        running.start_bots()
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _context(browser: Browser, request: pytest.FixtureRequest, **options: Any) -> Iterator[BrowserContext]:
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        if request.node.stash.get(FAILED, True):
            folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            folder.mkdir(parents=True, exist_ok=True)
            for n, page in enumerate(context.pages):
                with contextlib.suppress(Exception):  # a crashed page must not hide the test's own failure
                    page.screenshot(path=str(folder / f"page-{n}.png"), full_page=True)
        context.close()


@pytest.fixture
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    yield from _context(browser, request)


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    yield from _context(browser, request, viewport=PHONE, is_mobile=True, has_touch=True)


def log_in_with_link(page: Page, stack: DemoStack) -> None:
    page.goto(stack.login_link())
    page.wait_for_url(f"{stack.running.url}/ui/")
