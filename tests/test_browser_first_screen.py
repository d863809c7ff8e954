"""Issue 15, as a visitor sees it in Debian's chromium (items 1, 5, 6, 7, 8, 11): the first screen on a
desktop and a phone, the notices (one warning, advice for a visitor of a public instance, no empty sends,
a stopped reply counted, the model under each reply), the message box while a reply streams (no progress
overlay, its placeholder, the focus, Escape), the offline demo, the language picked in Gradio's Settings, and
a visitor's Settings without Gradio's developer items.

One public instance (a share link's settings: advice is for a visitor) and one offline demo, each started
once for the module; several checks per page load."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from browser_kit import WAIT_MS, browser, needs_chromium, reply_ended, send  # noqa: F401 - browser is a fixture
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect

import app as switchboard
from chatbot.core.settings import Settings

pytestmark = [pytest.mark.browser, needs_chromium]

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SECRET = "first-screen-secret-0123456789"


def _served(settings: Settings) -> Iterator[str]:
    server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=60)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def public(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app as a share link serves it (a public instance: visitors may paste their own key)."""
    settings = make_settings(fake_upstream.base_url, CHATBOT_SHARE="1", CHATBOT_BROWSER_SECRET=SECRET,
                             CHATBOT_DB=str(tmp_path_factory.mktemp("public") / "chats.db"),
                             CHATBOT_RATE_LIMIT="none", CHATBOT_TOKEN_LIMIT="none", CHATBOT_STREAMS_PER_VISITOR="0")
    yield from _served(settings)


@pytest.fixture(scope="module")
def offline_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings.load([], environ={"CHATBOT_LIVE_MODELS": "0", "CHATBOT_BROWSER_SECRET": SECRET,
                                          "CHATBOT_DB": str(tmp_path_factory.mktemp("demo") / "chats.db")},
                             env_file=None)
    assert settings.demo
    yield from _served(settings)


def _open(chromium: Browser, url: str, viewport: dict, locale: str = "en-US") -> Page:
    page = chromium.new_context(viewport=viewport, locale=locale).new_page()
    page.goto(url, timeout=WAIT_MS)
    expect(page.locator("#message textarea")).to_be_visible()
    expect(page.locator("#gauge #context-gauge")).to_be_visible()  # the page's load event has run
    return page


def _in_view(page: Page, selector: str) -> bool:
    return page.evaluate(
        """(s) => { const e = document.querySelector(s); if (!e) return false; const r = e.getBoundingClientRect();
            return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight + 1 }""", selector)


def _settings(page: Page) -> None:
    """Open Gradio's Settings (the footer's link)."""
    page.locator("footer").get_by_text("Settings").click()
    expect(page.get_by_role("combobox", name="Language")).to_be_visible()


def _words(page: Page) -> str:
    """Everything the page says to a person or a screen reader: its text and its labels."""
    return page.evaluate(
        """() => document.body.innerText + [...document.querySelectorAll('[aria-label], [placeholder], [title]')]
            .map(e => [e.getAttribute('aria-label'), e.getAttribute('placeholder'), e.title].join(' ')).join(' ')""")


def _chat_text(page: Page) -> str:
    return page.locator("#chatbot").inner_text()


def _notices(page: Page, kind: str) -> list[str]:
    return page.locator(f"#chatbot .thought-group.{kind}").all_inner_texts()


def test_first_screen_on_a_desktop_and_a_phone(browser: Browser, public: str) -> None:  # noqa: F811
    """Item 1: nothing scrolls away on a desktop; the chat, not the sidebar, on a phone; a welcome and
    example prompts (a click fills the box, sends nothing). Item 11: Settings without developer items."""
    page = _open(browser, public, DESKTOP)
    box = page.locator("#message textarea")
    expect(box).to_be_focused()
    assert page.evaluate("() => window.scrollY") == 0
    for part in ("#sb-header", "#model", "#gauge", "#message textarea", "#session-total"):
        assert _in_view(page, part), part
    expect(page.locator("#chatbot")).to_contain_text("Welcome")
    examples = page.locator("#chatbot .example")
    expect(examples).to_have_count(3)
    examples.first.click()
    expect(box).to_have_value(re.compile("vaccines"))
    assert not page.locator('#chatbot [data-testid="user"]').count()  # nothing was sent

    _settings(page)
    shown = page.evaluate("() => document.body.innerText")  # what is rendered and not hidden
    for developer_item in ("Screen Studio", "Progressive Web App", "Run history", "Start Recording"):
        assert developer_item not in shown, developer_item
    page.context.close()

    phone = _open(browser, public, PHONE)
    expect(phone.locator(".sidebar.open")).to_have_count(0)
    assert _in_view(phone, "#message textarea") and _in_view(phone, "#chatbot")
    phone.context.close()


def test_notices_the_box_while_streaming_and_stop(browser: Browser, public: str, fake: FakeUpstream) -> None:  # noqa: F811
    """Items 5 and 6: Enter on an empty box sends nothing; no progress overlay while a reply streams, the box
    keeps its placeholder and the focus; Escape stops the reply, which says so and counts; each reply names its
    model in a light cost line; an error is one warning, with advice a visitor can follow."""
    page = _open(browser, public, DESKTOP)
    box = page.locator("#message textarea")
    placeholder = box.get_attribute("placeholder")
    assert placeholder and "message" in placeholder.lower()
    box.press("Enter")
    page.wait_for_timeout(1_500)  # a bounded wait for something that must not happen
    assert not page.locator('#chatbot [data-testid="bot"], #chatbot [data-testid="user"]').count()
    assert "Type a message first" not in _chat_text(page)

    fake.push(Behaviour(reply="word " * 400, chunk_size=1, delay=0.05))
    send(page, "Tell me a long story")
    expect(page.locator("#message .stop-button")).to_be_visible()
    expect(page.locator('#chatbot [data-testid="bot"]').first).to_contain_text("word")
    expect(box).to_be_focused()
    assert box.get_attribute("placeholder") == placeholder
    assert not page.locator("#message .eta-bar, #chatbot .eta-bar, #message .progress-text").count()
    assert not page.locator(".wrap.default.full, .wrap.translucent").filter(has_text=re.compile(r"\d+\.\ds")).count()
    box.press("Escape")
    reply_ended(page)
    expect(page.locator("#chatbot .thought-group.sb-cost").filter(has_text="Stopped")).to_contain_text("gpt-4.1-mini")
    expect(page.locator("#session-total")).to_contain_text("1 reply")

    fake.push(Behaviour(reply="Hello " * 20, chunk_size=1, delay=0.03))
    send(page, "Hello")
    expect(page.locator("#message .stop-button")).to_be_visible()
    box.fill("typed meanwhile")  # the box stays usable while a reply streams, and what is typed stays
    reply_ended(page)
    expect(page.locator("#chatbot .thought-group.sb-cost").last).to_contain_text("gpt-4.1-mini")
    expect(page.locator("#session-total")).to_contain_text("2 replies")
    page.wait_for_timeout(2_000)  # a bounded wait for the reply's last steps (they emptied the box)
    expect(box).to_have_value("typed meanwhile")

    fake.push(Behaviour(status=401))
    send(page, "Are you there?")
    reply_ended(page)
    warning = page.locator("#chatbot .thought-group.sb-warning")
    expect(warning).to_have_count(1)
    expect(warning).to_contain_text("Your API key")
    said = warning.inner_text().strip()
    assert "OPENAI_API_KEY" not in said and "restart" not in said
    assert _chat_text(page).count("refused this app's API key") == 1  # said once, not title and body
    page.context.close()


def test_the_language_picked_in_settings(browser: Browser, public: str, fake: FakeUpstream) -> None:  # noqa: F811
    """Item 8: the gauge, the session line and errors follow the language picked in Gradio's Settings, with
    its numbers; no raw component name or translation key on the page."""
    page = _open(browser, public, DESKTOP)
    _settings(page)
    page.get_by_role("combobox", name="Language").click()
    page.get_by_role("option", name="Español").click()
    page.keyboard.press("Escape")
    expect(page.locator("#gauge")).to_contain_text(re.compile(r"Contexto: \d+ de \d{1,3}(\.\d{3})+ tokens"))

    send(page, "Hola")
    reply_ended(page)
    expect(page.locator("#session-total")).to_contain_text("Esta sesión")
    fake.push(Behaviour(status=402))
    send(page, "otra")
    reply_ended(page)
    expect(page.locator("#chatbot .thought-group.sb-warning")).to_contain_text("saldo")
    shown = _words(page)
    assert "MultimodalTextbox" not in shown and "common.complete" not in shown
    page.context.close()


def test_the_offline_demo(browser: Browser, offline_demo: str) -> None:  # noqa: F811
    """Item 7: no key field that does nothing, no price for a simulated reply, and the reasoning model thinks."""
    page = _open(browser, offline_demo, DESKTOP)
    assert page.evaluate("() => window.scrollY") == 0  # item 1: the banner too stays in view
    for part in ("#demo-banner", "#model", "#gauge", "#message textarea"):
        assert _in_view(page, part), part
    expect(page.locator("#user-key")).to_have_count(0)
    page.locator("#model input").fill("reasoning")
    page.get_by_role("option", name=re.compile("reasoning")).first.click()
    send(page, "Is 91 prime?")
    reply_ended(page)
    expect(page.locator("#chatbot .thought-group").filter(has_text="Thinking")).to_have_count(1)
    cost = page.locator("#chatbot .thought-group.sb-cost")
    expect(cost).to_contain_text("simulated")
    assert "$" not in cost.inner_text() and "$" not in page.locator("#session-total").inner_text()
    page.context.close()

