"""Browser tests: Playwright (the Python package) driving Debian's chromium, headless.

    browser   one chromium for tests/browser; fails the run loudly when it cannot start
    page      a fresh context (no cookies) and page per test; its last state is saved as
              test-artifacts/<test>.png, and `page.artifact("name")` saves a named step

Chromium comes from Debian (`dev/install.sh --chromium`, run by `make test`), never from
`playwright install` (its download site is not reachable here). The SLURM `cluster` fixture of
the integration suite is shared, so a browser test can start a real hub (running_hub).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.conftest import cluster  # noqa: F401  (fixture shared with the integration suite)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CARME_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = os.environ.get("CARME_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def artifact_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:150]


# package scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# while it is open, and the async tests of the other suites need the thread's loop to themselves
@pytest.fixture(scope="package")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.fail(
            f"the playwright package is missing ({e}): run `make test` or `bash dev/install.sh --chromium`",
            pytrace=False,
        )
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `make test` or `bash dev/install.sh --chromium` (Debian's chromium)",
            pytrace=False,
        )
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as e:  # noqa: BLE001  (whatever stops chromium must fail the run, with its message)
        pytest.fail(f"chromium ({CHROMIUM}) did not start: {e}", pytrace=False)
    yield browser
    browser.close()


@pytest.fixture
def page(browser, request):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    test = artifact_name(request.node.name)

    def artifact(step: str) -> Path:
        path = ARTIFACTS / f"{test}--{artifact_name(step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    page.artifact = artifact
    try:
        yield page
    finally:
        try:
            page.screenshot(path=str(ARTIFACTS / f"{test}.png"), full_page=True)
        finally:
            context.close()


def login(page, hub, user: str, lands_on: str = r".*/hub/(spawn|home).*") -> None:
    """Log `user` in through the hub's login page (the test hub's shared demo password)."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.demo_password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(lands_on))
