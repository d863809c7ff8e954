"""Issue 12.8, seen in a real browser: model output, a saved chat's title and an imported chat are shown
as text and never run script in the visitor's browser.

Every payload calls ``__pwn(tag)``, a function Playwright exposes in every page and frame of the browser
context (so a payload that runs anywhere, in the page, an iframe, or a tab a link opened, is recorded);
some call ``alert()`` instead, and every dialog is recorded too. Each payload sits between words that
must still show."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from browser_kit import WAIT_MS, browser, needs_chromium, open_page, reply_ended, send, served  # noqa: F401
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.browser, needs_chromium]

_DATA_HTML = base64.b64encode(b"<script>parent.__pwn('data-url')</script>").decode()

#: HTML, SVG, MathML and Markdown tricks; each line keeps a visible word ("seen-N") around its payload.
PAYLOADS = [
    "seen-1 <img src=x onerror=\"__pwn('img-onerror')\"> after-1",
    "seen-2 <script>__pwn('script')</script> after-2 <img src=y onerror=\"window.__pwned=1\">",
    "seen-3 <a href=\"javascript:__pwn('a-href')\">link-3</a>",
    "seen-4 <svg onload=\"__pwn('svg-onload')\"><script>__pwn('svg-script')</script></svg> after-4",
    "seen-5 <iframe src=\"javascript:parent.__pwn('iframe')\"></iframe> after-5",
    "seen-6 <iframe srcdoc=\"<script>parent.__pwn('srcdoc')</script>\"></iframe> after-6",
    "seen-7 <details open ontoggle=\"__pwn('details')\"><summary>sum-7</summary>x</details>",
    "seen-8 <thinking onmouseover=\"__pwn('custom-tag')\" style=\"display:block;width:900px;height:60px\">"
    "hover-8</thinking>",
    "seen-9 [link-9](javascript:__pwn('md-link')) and [link-9b](JaVaScRiPt:alert('md-case'))",
    f"seen-10 [link-10](data:text/html;base64,{_DATA_HTML})",
    "seen-11 ![img-11](x\" onerror=\"__pwn('md-img'))",
    "seen-12 <a href=\"jav&#x09;ascript:__pwn('entity')\">link-12</a>",
    "seen-13 [link-13](javascript&#58;__pwn('colon-entity'))",
    "seen-14 <a href=\"#\" onclick=\"__pwn('onclick')\">link-14</a>",
    "seen-15 <object data=\"javascript:__pwn('object')\"></object><embed src=\"javascript:__pwn('embed')\">",
    "seen-17 <form action=\"javascript:__pwn('form')\"><button>button-17</button></form>",
    "seen-18 $$\\href{javascript:__pwn('katex')}{katex-18}$$",
    "seen-19 <input autofocus onfocus=\"__pwn('autofocus')\"> <body onload=\"__pwn('body')\">",
    "seen-20 <a href=\"javascript&colon;alert('colon-named')\">link-20</a> <meta http-equiv=\"refresh\" "
    "content=\"0;url=javascript:__pwn('meta')\">",
    # last: the sanitizer drops what follows an unclosed <style> (it is style, not text)
    "seen-16 <math><mtext><table><mglyph><style><img src=x onerror=\"__pwn('mxss')\">after-16",
]
PAYLOAD = "\n\n".join(PAYLOADS)
SEEN = [f"seen-{i}" for i in range(1, len(PAYLOADS) + 1)]
TITLE = "<img src=x onerror=__pwn('t1')><script>__pwn('t2')</script>title-seen"  # within a title's 80


def _watch(page: Page, hits: list[str]) -> None:
    """Record every `__pwn` call and every dialog of ``page``'s context (pages it opens included)."""
    context = page.context
    context.expose_binding("__pwn", lambda source, tag: hits.append(str(tag)))

    def on_dialog(dialog) -> None:
        hits.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def on_page(opened: Page) -> None:
        opened.on("dialog", on_dialog)

    page.on("dialog", on_dialog)
    context.on("page", on_page)


def _poke(page: Page) -> None:
    """What a visitor might do to the content: hover and click every link, button and custom element in
    the chat and the saved-chats panel (links opened in new tabs are watched too)."""
    targets = page.locator(
        "#chatbot a, #chatbot button:has-text('button-17'), #chatbot thinking, #chatbot details summary, "
        "#saved-chats label, #chatbot img"
    )
    for i in range(targets.count()):
        target = targets.nth(i)
        try:
            if not target.is_visible():  # nothing a visitor could reach (waiting for it only costs time)
                continue
            target.hover(timeout=1_000)
            target.click(timeout=1_000, no_wait_after=True, modifiers=[])
        except Exception:  # hidden, detached or covered: nothing a visitor could click either
            continue
    page.wait_for_timeout(500)  # let a navigation or a new tab a click started begin (then it is recorded)
    for opened in page.context.pages:
        if opened is not page:
            opened.close()


def _unsafe_links(page: Page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('a[href], iframe, object, embed, form[action]')]
            .map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('data')
                      || e.getAttribute('action') || e.getAttribute('srcdoc') || e.tagName)
            .filter(v => /^(javascript|data|vbscript):|^(IFRAME|OBJECT|EMBED)$/i
                         .test(v.replace(/[\\s\\0]/g, '')))"""
    )


def _shows_every_word(page: Page) -> None:
    chat = page.locator("#chatbot")
    for word in SEEN:
        expect(chat).to_contain_text(word)


@needs_chromium
def test_reply_title_and_imported_chat_never_run_script(
    browser: Browser,  # noqa: F811
    served: str,  # noqa: F811
    fake: FakeUpstream,
    tmp_path: Path,
) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    hits: list[str] = []
    _watch(page, hits)
    open_page(page, served)

    # A reply (and its thinking block) full of payloads; the question, hence the saved chat's title, too.
    fake.push(Behaviour(reasoning=PAYLOAD, reply=PAYLOAD, chunk_size=40))
    send(page, TITLE + " question")
    expect(page.locator("#chatbot")).to_contain_text("tokens in")
    reply_ended(page)
    _shows_every_word(page)
    expect(page.locator("#saved-chats")).to_contain_text("title-seen")
    _poke(page)

    # A title renamed to a payload.
    page.locator("#chat-title input, #chat-title textarea").first.fill(TITLE + " renamed")
    page.locator("#rename-chat").click()
    expect(page.locator("#saved-chats")).to_contain_text("renamed")

    # An imported chat: payloads in its title, messages and a note's title.
    exported = {
        "format": "switchboard.conversation", "version": 1, "title": TITLE + " imported", "model": "fast",
        "messages": [
            {"role": "user", "content": PAYLOAD},
            {"role": "assistant", "content": PAYLOAD, "metadata": {"title": TITLE, "status": "done"}},
            {"role": "assistant", "content": PAYLOAD},
        ],
    }
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(exported), encoding="utf-8")
    with page.expect_file_chooser(timeout=WAIT_MS) as chooser:
        page.locator("#import-json").click()
    chooser.value.set_files(evil)
    expect(page.get_by_test_id("toast-body").first).to_contain_text(TITLE + " imported")  # as text, whole
    expect(page.locator("#saved-chats label")).to_have_count(2)
    expect(page.locator("#saved-chats")).to_contain_text("imported")
    _shows_every_word(page)
    note = page.locator("#chatbot").get_by_text("title-seen").first
    if note.count():
        note.click(timeout=5_000)  # open the note's block
    _poke(page)

    # Reloaded from the browser's store: the same chat, shown again from what was saved.
    page.reload()
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    expect(page.locator("#saved-chats")).to_contain_text("imported")
    _shows_every_word(page)
    _poke(page)
    page.locator("#saved-chats label", has_text="renamed").click()
    expect(page.locator("#chatbot")).to_contain_text("tokens in")
    _shows_every_word(page)
    _poke(page)

    assert hits == [], f"script ran in the visitor's browser: {hits}"
    assert page.evaluate("() => window.__pwned") is None
    assert _unsafe_links(page) == []
    context.close()
