"""Issue 13.7, seen in a real browser: switching chats while a reply streams never loses a chat.

A chat is listed from its first message; every save names its chat by id; switching (or New chat, Delete,
Import) while a reply streams is refused with a message, so the chat on screen, the title box and the
list's choice always belong together. Then rename, delete, reload: every chat holds exactly its own turns."""

from __future__ import annotations

import pytest
from browser_kit import WAIT_MS, browser, needs_chromium, open_page, reply_ended, send, served  # noqa: F401
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.browser, needs_chromium]

OLD = ["old question one", "old question two", "old question three"]
NEW = "new question while streaming"
SLOW = "slow words " * 4000  # 44,000 characters, 4 a chunk, 0.05 s apart: over 9 minutes (Stop ends it)


def questions(page: Page) -> list[str]:
    """The visitor's messages shown in the chat, in order."""
    return [t.strip() for t in page.locator('#chatbot [data-testid="user"]').all_inner_texts()]


def shows(page: Page, expected: list[str]) -> None:
    """The chat just opened shows exactly ``expected`` (its messages render after its title box: wait for them)."""
    expect(page.locator('#chatbot [data-testid="user"]')).to_have_count(len(expected))
    assert questions(page) == expected


def selected(page: Page) -> str | None:
    """The saved chat chosen in the list (its label), or None."""
    checked = page.locator("#saved-chats label:has(input:checked)")
    return checked.inner_text().strip() if checked.count() else None


def title_box(page: Page) -> str:
    return page.locator("#chat-title input, #chat-title textarea").first.input_value()


def open_chat(page: Page, label: str) -> None:
    page.locator("#saved-chats label", has_text=label).click()
    expect(page.locator("#chat-title input, #chat-title textarea").first).to_have_value(label)


def in_step(page: Page) -> None:
    """The title box names the chat chosen in the list."""
    expect(page.locator("#chat-title input, #chat-title textarea").first).to_have_value(selected(page) or "")


@needs_chromium
def test_switching_mid_reply_then_rename_delete_reload_keeps_every_chat(
    browser: Browser,  # noqa: F811
    served: str,  # noqa: F811
    fake: FakeUpstream,
) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    page = open_page(context.new_page(), served)
    chat = page.locator("#chatbot")

    # An older chat with three turns.
    for question in OLD:
        send(page, question)
        expect(chat).to_contain_text(f"you said {question}")
        reply_ended(page)
    expect(page.locator("#saved-chats label")).to_have_count(1)

    # A new chat whose first reply streams slowly: it is listed (and chosen) while the reply streams.
    page.locator("#new-chat").click()
    expect(chat).not_to_contain_text(OLD[0])
    fake.push(Behaviour(reply=SLOW, chunk_size=4, delay=0.05))
    send(page, NEW)
    expect(chat).to_contain_text("slow words slow words")
    expect(page.locator("#saved-chats label")).to_have_count(2)
    expect(page.locator("#saved-chats label:has(input:checked)")).to_have_text(NEW)
    in_step(page)
    assert fake.last.finished_at is None, "the reply ended before the checks: they did not test mid-reply"

    # Mid-stream, the visitor clicks the older chat: refused with a message, the reply goes on, and what is
    # shown stays together (the chat, the list's choice and the title).
    page.locator("#saved-chats label", has_text=OLD[0]).click()
    expect(page.get_by_test_id("toast-body").first).to_contain_text("Stop")
    expect(page.locator("#saved-chats label:has(input:checked)")).to_have_text(NEW)
    in_step(page)
    assert questions(page) == [NEW]
    toasts = page.get_by_test_id("toast-body")
    expect(toasts).to_have_count(0)  # the message went away by itself
    page.locator("#new-chat").click()  # refused too
    expect(toasts.first).to_contain_text("Stop")
    assert fake.last.finished_at is None and fake.last.disconnected_at is None
    assert questions(page) == [NEW]

    # Stop: the partial reply is kept in its own chat; now the older chat opens.
    page.locator("#message").get_by_role("button", name="Stop").click()
    reply_ended(page)
    in_step(page)

    # Rename the older chat; then a third chat is made and deleted.
    open_chat(page, OLD[0])
    shows(page, OLD)
    page.locator("#chat-title input, #chat-title textarea").first.fill("Older, renamed")
    page.locator("#rename-chat").click()
    expect(page.locator("#saved-chats")).to_contain_text("Older, renamed")
    in_step(page)
    assert questions(page) == OLD
    page.locator("#new-chat").click()
    send(page, "doomed question")
    expect(chat).to_contain_text("you said doomed question")
    reply_ended(page)
    expect(page.locator("#saved-chats label")).to_have_count(3)
    in_step(page)
    page.locator("#delete-chat").click()
    expect(page.locator("#saved-chats label")).to_have_count(2)
    expect(page.locator("#saved-chats")).not_to_contain_text("doomed")

    # After a reload every chat holds exactly its own turns.
    page.reload()
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    expect(page.locator("#saved-chats label")).to_have_count(2)
    open_chat(page, "Older, renamed")
    expect(chat).to_contain_text(f"you said {OLD[2]}")
    shows(page, OLD)
    assert chat.inner_text().count("you said") == 3
    assert "slow words" not in chat.inner_text()
    open_chat(page, NEW)
    expect(chat).to_contain_text("slow words slow words")  # the partial reply Stop kept
    shows(page, [NEW])
    assert "you said" not in chat.inner_text()
    context.close()
