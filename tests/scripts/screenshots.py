"""The README's screenshots, taken by hand (never by the test suite): the app in its production assembly against
the fake upstream, in Debian's chromium.

    python tests/scripts/screenshots.py [FOLDER]     # FOLDER defaults to docs/screenshots

writes first-screen-desktop.png (1366x900), first-screen-phone.png (390x844), chat-list.png, error.png and
spanish.png into FOLDER.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_kit import ARGS, CHROMIUM, reply_ended, send  # noqa: E402
from conftest import make_settings  # noqa: E402
from fake_upstream import Behaviour, FakeUpstream  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

import app as switchboard  # noqa: E402

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000

CHATS = [
    ("Plan a three-day trip to Lisbon", "Day 1: Alfama and the castle. Day 2: Belém. Day 3: Sintra."),
    ("What is the area of a circle?", "The area of a circle of radius $r$ is $A = \\pi r^2$."),
    ("Write a haiku about coffee", "Dark cup, quiet steam\nthe morning opens slowly\none sip, then the day"),
]


def _page(browser: Browser, url: str, viewport: dict, locale: str = "en-US", mobile: bool = False) -> Page:
    context = browser.new_context(locale=locale, viewport=viewport, is_mobile=mobile, has_touch=mobile)
    page = context.new_page()
    page.goto(url, timeout=WAIT_MS)
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    page.wait_for_timeout(1_000)  # the gauge and the saved chats fill in after load
    return page


def _shot(page: Page, folder: Path, name: str) -> None:
    page.mouse.move(page.viewport_size["width"] - 2, page.viewport_size["height"] - 2)  # no hover  # type: ignore[index]
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.evaluate("() => { for (const e of [document.scrollingElement, ...document.querySelectorAll('*')]) "
                  "{ if (e && e.scrollTop && !e.closest('#chatbot')) e.scrollTop = 0 } }")
    page.wait_for_timeout(300)
    page.screenshot(path=str(folder / name))
    print(folder / name)


def _chat(page: Page, fake: FakeUpstream, question: str, answer: str, **behaviour: object) -> None:
    fake.push(Behaviour(reply=answer, chunk_size=12, **behaviour))  # type: ignore[arg-type]
    send(page, question)
    expect(page.locator("#chatbot")).to_contain_text(question[:20], timeout=WAIT_MS)
    reply_ended(page)


def take(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as data, sync_playwright() as playwright:
        settings = make_settings(fake.base_url, CHATBOT_BROWSER_SECRET="screenshots-secret-0123456789",
                                 CHATBOT_DB=str(Path(data) / "chats.db"))
        server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=120)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = _page(browser, server.url, DESKTOP)
            _shot(page, folder, "first-screen-desktop.png")
            for question, answer in CHATS:
                _chat(page, fake, question, answer)
                page.locator("#new-chat").click()
            page.locator("#saved-chats").get_by_text(CHATS[1][0]).first.click()
            expect(page.locator("#chatbot")).to_contain_text(CHATS[1][0])
            _shot(page, folder, "chat-list.png")
            page.locator("#new-chat").click()
            fake.push(Behaviour(status=402))
            send(page, "Summarise this article for me")
            reply_ended(page)
            _shot(page, folder, "error.png")
            page.context.close()

            page = _page(browser, server.url, PHONE, mobile=True)
            _shot(page, folder, "first-screen-phone.png")
            page.context.close()

            page = _page(browser, server.url, DESKTOP, locale="es-ES")
            _chat(page, fake, "¿Cuál es la capital de Australia?",
                  "La capital de Australia es **Canberra**, no Sídney.",
                  reasoning="Pregunta de geografía: la capital no es la ciudad más grande.")
            _shot(page, folder, "spanish.png")
            page.context.close()
        finally:
            browser.close()
            server.stop()


if __name__ == "__main__":
    take(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
