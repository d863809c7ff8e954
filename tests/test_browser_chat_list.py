"""Issue 15.2-15.4, seen in a real browser: the chat list (plain titles, groups, search, per-chat actions,
Undo for Delete and Clear, no saved chat for a failed attempt, a stopped reply's note kept), editing a sent
message and a retry that keeps the earlier answer, and each chat's own settings reaching the provider and
coming back with it.

One server and one browser for the module (the settings are equal); each test is one page load."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_kit import WAIT_MS, browser, needs_chromium, open_page, reply_ended, send  # noqa: F401
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect
from test_browser import ROOT, SHOTS_ENV, screenshot

import app as switchboard
from chatbot.core.i18n import text
from chatbot.web.chats import STORAGE_KEY

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def served(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("chat-list") / "chats.db"
    settings = make_settings(fake_upstream.base_url, CHATBOT_BROWSER_SECRET="browser-kit-secret-0123456789",
                             CHATBOT_DB=str(Path(db)), CHATBOT_MAX_TOKENS="4096")
    server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=60)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, served: str) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    try:
        yield open_page(context.new_page(), served)
    finally:
        context.close()


def listed(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("#saved-chats label").all_inner_texts()]


def questions(page: Page) -> list[str]:
    return [t.strip() for t in page.locator('#chatbot [data-testid="user"]').all_inner_texts()]


def ask(page: Page, question: str) -> None:
    """Send ``question`` and wait for its (echoed) answer to end."""
    answers = page.locator('#chatbot [data-testid="bot"]', has_text="you said")
    before = answers.count()
    send(page, question)
    expect(answers).to_have_count(before + 1)
    reply_ended(page)


def new_chat(page: Page) -> None:
    page.locator("#new-chat").click()
    expect(page.locator('#chatbot [data-testid="bot"]')).to_have_count(0)


def test_the_chat_list_a_person_can_live_with(page: Page, fake: FakeUpstream) -> None:
    """15.2: no actions without a chat; a plain-text title under "Today"; search; Undo of Delete and of the
    chat box's Clear; a failed first attempt leaves no saved chat."""
    chats_labels = page.locator("#saved-chats label")
    expect(page.locator("#delete-chat")).to_be_hidden()  # no chat: no Rename / Delete / Export
    expect(page.locator("#chat-title")).to_be_hidden()
    ask(page, "# **Trip** to _Lima_\nwith the details")
    expect(chats_labels).to_have_count(1)
    assert listed(page) == ["Trip to Lima"]  # plain text, first line
    expect(page.locator("#saved-chats-today")).to_contain_text("Today")
    expect(page.locator("#delete-chat")).to_be_visible()
    new_chat(page)
    ask(page, "Tax forms")
    expect(chats_labels).to_have_count(2)

    page.locator("#chat-search input, #chat-search textarea").first.fill("lima")
    expect(chats_labels).to_have_count(1)
    expect(chats_labels).to_have_text(["Trip to Lima"])
    page.locator("#chat-search input, #chat-search textarea").first.fill("")
    expect(chats_labels).to_have_count(2)

    page.locator("#delete-chat").click()  # the chat on screen: Tax forms
    expect(chats_labels).to_have_count(1)
    page.locator("#restore-chat").click()
    expect(chats_labels).to_have_count(2)
    expect(page.locator("#chatbot")).to_contain_text("you said Tax forms")
    expect(page.locator("#restore-chat")).to_be_hidden()

    page.locator("#chatbot").get_by_role("button", name="Clear").click()
    expect(page.locator("#chatbot")).not_to_contain_text("you said Tax forms")
    page.locator("#restore-chat").click()
    expect(page.locator("#chatbot")).to_contain_text("you said Tax forms")
    expect(page.locator("#saved-chats label:has(input:checked)")).to_have_text("Tax forms")
    if os.environ.get(SHOTS_ENV):  # the README's picture of the list (on purpose only, see test_browser.py)
        screenshot(page, ROOT / os.environ[SHOTS_ENV], "chat-list.png")

    new_chat(page)
    fake.push(Behaviour(status=500))
    send(page, "this one fails")
    expect(page.locator("#chatbot")).to_contain_text("⚠️")
    reply_ended(page)
    expect(chats_labels).to_have_count(2)  # the failed attempt is not a saved chat
    assert "this one fails" not in listed(page)

    # Stop: the chat is saved with its "Stopped" note, so a reload right after Stop keeps it
    send(page, "a long one [[endless=1]] [[delay=0.05]]")
    expect(page.locator("#chatbot")).to_contain_text("you said a long one")
    page.locator("#message .stop-button").click()
    stopped = page.locator("#chatbot").get_by_text(f"■ {text('stopped')}")
    expect(stopped).to_be_visible()
    shown = page.evaluate("key => localStorage.getItem(key)", STORAGE_KEY)
    page.wait_for_function("([key, before]) => localStorage.getItem(key) !== before", arg=[STORAGE_KEY, shown],
                           polling=100, timeout=WAIT_MS)  # the save after the note
    page.reload()
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    expect(page.locator("#chatbot")).to_contain_text("you said a long one")
    expect(stopped).to_be_visible()


def test_edit_retry_and_each_chats_settings(page: Page, fake: FakeUpstream) -> None:
    """15.4: a preset, a temperature and a reply length reach the provider and come back with their chat;
    15.3: a sent message is edited in place and answered again; a retry keeps the earlier answer."""
    page.locator("#chat-settings").get_by_text("Chat settings").click()
    page.locator("#chat-preset input").click()
    page.get_by_role("option", name="Concise").click()
    concise = text("prompt_concise")
    system = page.locator("#chat-system textarea")
    expect(system).to_have_value(concise)
    page.locator("#chat-temperature input").fill("0.3")
    page.locator("#chat-max-tokens input").fill("123")
    ask(page, "first question")
    body = fake.last.body
    assert body["messages"][0] == {"role": "system", "content": concise}
    assert body["temperature"] == 0.3 and body["max_tokens"] == 123

    new_chat(page)
    expect(system).to_have_value("")  # a new chat starts with the app's defaults
    ask(page, "other chat")
    assert "temperature" not in fake.last.body and fake.last.body["max_tokens"] > 123
    page.locator("#saved-chats label", has_text="first question").click()
    expect(system).to_have_value(concise)
    expect(page.locator("#chat-max-tokens input")).to_have_value("123")

    user = page.locator('#chatbot [data-testid="user"]').first
    user.hover()
    page.locator("#chatbot").get_by_role("button", name="Edit").first.click()
    editor = page.locator("#chatbot textarea").first
    editor.fill("edited question")
    page.locator("#chatbot").get_by_role("button", name="Submit").first.click()
    expect(page.locator("#chatbot")).to_contain_text("you said edited question")
    reply_ended(page)
    assert questions(page) == ["edited question"]
    assert fake.last.body["temperature"] == 0.3  # the chat's settings go with the edit too

    fake.push(Behaviour(reply="A second, different answer."))
    page.locator("#chatbot").get_by_role("button", name="Retry").click()
    expect(page.locator("#chatbot")).to_contain_text("A second, different answer.")
    reply_ended(page)
    previous = page.locator("#chatbot").get_by_text(text("previous_answer"))
    expect(previous).to_be_visible()
    previous.click()  # the earlier answer is a click away
    expect(page.locator("#chatbot")).to_contain_text("you said edited question")
    page.reload()
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    page.locator("#saved-chats label", has_text="first question").click()  # (its title stays)
    expect(page.locator("#chatbot").get_by_text(text("previous_answer"))).to_be_visible()
