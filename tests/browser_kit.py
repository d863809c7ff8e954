"""What the browser tests share: Debian's chromium driven by Playwright, and the app in its production
assembly (``app.build_server`` + ``app.serve_in_thread``) against the fake upstream.

``playwright install`` cannot download here: the tests use /usr/bin/chromium and are skipped without it
(outside CI; in CI, where .ci/run installs it, a missing browser fails)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_settings
from fake_upstream import FakeUpstream
from playwright.sync_api import Browser, Page, expect, sync_playwright

import app as switchboard

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 1000}
#: Bounded waits for events, sized for a loaded 2-core machine (never a timing assertion).
WAIT_MS = 45_000

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="the browser tests need Debian's chromium at /usr/bin/chromium (apt install chromium)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served(fake: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    """The whole app (UI and HTTP API) on a free port; its URL."""
    settings = make_settings(
        fake.base_url, CHATBOT_BROWSER_SECRET="browser-kit-secret-0123456789", CHATBOT_DB=str(tmp_path / "chats.db")
    )
    server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=60)
    try:
        yield server.url
    finally:
        server.stop()


def open_page(page: Page, url: str) -> Page:
    page.goto(url, timeout=WAIT_MS)
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    expect(page.locator("#saved-chats")).to_be_visible()
    return page


def send(page: Page, text: str) -> None:
    """Send ``text`` once the box takes a message (it stays usable while a reply streams, but Enter sends
    nothing until the reply has ended: wait for its Stop button to go)."""
    box = page.locator("#message textarea")
    expect(page.locator("#message").get_by_role("button", name="Stop")).to_have_count(0)
    expect(box).to_be_enabled()
    for _ in range(3):  # on a loaded machine the last step of the previous reply's chain may land after
        box.fill(text)  # the fill and leave the box as it was: then the message went nowhere; type it again
        box.press("Enter")
        try:
            expect(box).to_have_value("", timeout=15_000)  # the box is emptied when the message is taken
            return
        except AssertionError:
            expect(page.locator("#message").get_by_role("button", name="Stop")).to_have_count(0)
    raise AssertionError(f"the message box never took {text!r}")


def reply_ended(page: Page) -> None:
    """Wait until the message box takes a message again (the reply, and the chain after it, ended)."""
    expect(page.locator("#message").get_by_role("button", name="Stop")).to_have_count(0)
    expect(page.locator("#message textarea")).to_be_enabled()
