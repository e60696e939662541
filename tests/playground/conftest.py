"""Fixtures of the playground's browser tests: Debian's Chromium (``make browser`` installs
it) driven by Playwright, against the real service of ``tests/conftest.py``'s ``stack``.

Each test gets a fresh browser context (empty localStorage) at a laptop's size, 1366x768,
with clipboard access; an error the page logs (a CSP violation, an exception) fails the test.
Screenshots go to ``.artifacts/playground/`` (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.service.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "playground"
LAPTOP = {"width": 1366, "height": 768}
KEY_STORAGE = "sgflow.playground.key"

# generation on two shared CPU cores: a run takes seconds, sometimes tens of them
expect.set_options(timeout=90_000)


# module-scoped: Playwright's sync API runs an event loop in this thread while it is open,
# and later modules' asyncio.run() would find it running
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Pages:
    """Opens pages in fresh contexts and closes them (with a last screenshot) at the end."""

    def __init__(self, browser: Browser, stack: Stack, name: str) -> None:
        self.browser, self.stack, self.name = browser, stack, name
        self.opened: list[tuple[BrowserContext, Page]] = []
        self.problems: list[str] = []

    def new(self, *, key: bool = True) -> Page:
        """A page at 1366x768, not yet navigated; with tenant acme's key in its storage
        unless ``key`` is false."""
        context = self.browser.new_context(viewport=LAPTOP, base_url=self.stack.url)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.stack.url)
        if key:
            context.add_init_script(
                f"window.localStorage.getItem({KEY_STORAGE!r}) === null && "
                f"window.localStorage.setItem({KEY_STORAGE!r}, {self.stack.acme_key!r})"
            )
        # a CSP violation is logged with what and where, not only that it happened
        context.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => console.error("
            "`CSP ${e.effectiveDirective} blocked ${e.blockedURI} at ${e.sourceFile}:"
            "${e.lineNumber}:${e.columnNumber} sample=${e.sample}`))"
        )
        page = context.new_page()
        page.on("pageerror", lambda exc: self.problems.append(f"exception: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.problems.append(f"console: {msg.text}") if msg.type == "error" else None
            ),
        )
        self.opened.append((context, page))
        return page

    def close(self) -> None:
        for i, (context, page) in enumerate(self.opened):
            shot(page, f"{self.name}-end{i or ''}")
            context.close()


@pytest.fixture
def pages(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser, stack, request.node.name)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.problems, opened.problems


@pytest.fixture
def page(pages: Pages) -> Page:
    """A fresh page with tenant acme's key in its storage."""
    return pages.new()


def shot(page: Page, name: str) -> None:
    """A screenshot of the whole page as ``.artifacts/playground/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
