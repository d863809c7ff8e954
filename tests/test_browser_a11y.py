"""Issue 15.9 and 15.10, seen in a real browser: axe-core finds no critical or serious violation on the page
(before and after a reply, in English, Spanish and Portuguese, light and dark); the message box offers only the
file types the app reads, refuses another type or a file too large before anything is sent, and shows each
waiting file's name, size and a named remove button; inline math renders.

axe-core comes from the npm registry at the version tests/axe/package-lock.json pins (``npm ci --prefix
tests/axe``, which .ci/run does); without it the accessibility test is skipped outside CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_kit import VIEWPORT, WAIT_MS, browser, needs_chromium, reply_ended, send  # noqa: F401
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect

import app as switchboard

pytestmark = [pytest.mark.browser, needs_chromium]

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: Small, so that a file over the limit is cheap to make (Gradio refuses it in the browser, before upload).
MAX_UPLOAD_MB = "0.05"


@pytest.fixture(scope="module")
def served(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app for the module (equal settings for every test here); its URL."""
    settings = make_settings(
        fake_upstream.base_url, CHATBOT_BROWSER_SECRET="browser-a11y-secret-0123456789",
        CHATBOT_DB=str(tmp_path_factory.mktemp("a11y") / "chats.db"), CHATBOT_MAX_UPLOAD_MB=MAX_UPLOAD_MB,
    )
    server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=60)
    try:
        yield server.url
    finally:
        server.stop()


def _page(chromium: Browser, url: str, locale: str = "en-US", scheme: str = "light") -> Page:
    page = chromium.new_context(locale=locale, viewport=VIEWPORT, color_scheme=scheme).new_page()  # type: ignore[arg-type]
    page.goto(url, timeout=WAIT_MS)
    page.wait_for_selector("#chatbot", timeout=WAIT_MS)
    expect(page.locator("#saved-chats")).to_be_visible()
    return page


def _axe(page: Page) -> list[str]:
    """axe-core's critical and serious violations on the page, one line each (rule, impact, first nodes)."""
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{v['id']} ({v['impact']}): " + "; ".join(n["html"][:120] for n in v["nodes"][:3])
            for v in found if v["impact"] in ("critical", "serious") or v["id"] == "page-has-heading-one"]


@pytest.mark.skipif(not AXE.exists() and not os.environ.get("CI"),
                    reason="axe-core is not installed: npm ci --prefix tests/axe")
@pytest.mark.parametrize(("locale", "scheme"), [("en-US", "light"), ("es-ES", "dark"), ("pt-BR", "light")])
def test_axe_finds_no_critical_or_serious_violation(
    browser: Browser, served: str, fake: FakeUpstream, locale: str, scheme: str  # noqa: F811
) -> None:
    page = _page(browser, served, locale, scheme)
    assert _axe(page) == [], "before a reply"
    fake.push(Behaviour(reasoning="Short thought.", reply="A reply with **bold** and `code`."))
    send(page, "Hello")
    expect(page.locator("#chatbot .thought-group")).to_have_count(2)  # the thinking block and the cost line
    reply_ended(page)
    # a collapsible title is briefly empty while Gradio renders it (a loaded run caught one: axe's
    # aria-command-name); the check is of the rendered page
    page.wait_for_function("() => [...document.querySelectorAll('#chatbot .title[role=button]')]"
                           ".every(t => t.textContent.trim())", polling=100, timeout=WAIT_MS)
    assert _axe(page) == [], "after a reply"
    page.context.close()


def test_the_message_box_takes_only_files_the_app_reads_and_names_each(
    browser: Browser, served: str, fake: FakeUpstream, tmp_path: Path  # noqa: F811
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 not a text file")
    big = tmp_path / "big.txt"
    big.write_text("x" * 60_000)  # over CHATBOT_MAX_UPLOAD_MB (0.05 MB)
    notes = tmp_path / "notes.txt"
    notes.write_text("milk, eggs, bread")
    page = _page(browser, served, "es-ES")
    picker = page.locator("#message input[type=file]")
    accept = (picker.get_attribute("accept") or "").split(", ")
    assert {".png", ".jpg", "text/*", ".md", ".py"} <= set(accept) and ".pdf" not in accept and "*" not in accept
    waiting = page.locator("#message .thumbnail-wrapper")

    picker.set_input_files([str(report)])  # a type the app does not read: refused in the browser, saying so
    toasts = page.get_by_test_id("toast-text")
    expect(toasts.filter(has_text="report.pdf: no se puede adjuntar este tipo de archivo")).to_be_visible()
    picker.set_input_files([str(big)])  # too large: refused before it is uploaded
    expect(toasts.filter(has_text='"big.txt": supera 51.2 KB')).to_be_visible()
    expect(waiting).to_have_count(0)

    picker.set_input_files([str(notes)])  # waiting: its name and size, and a remove button named after it
    expect(waiting).to_have_count(1)
    expect(waiting.locator(".pending-file")).to_have_text("notes.txt · 1 KB")
    expect(waiting).to_have_attribute("aria-label", "notes.txt · 1 KB")
    remove = page.get_by_role("button", name="Quitar notes.txt")
    expect(remove).to_have_css("opacity", "1")  # shown without hovering (Gradio shows it on hover only)
    remove.click()
    expect(waiting).to_have_count(0)
    assert fake.requests == []  # nothing was sent
    page.context.close()


def test_inline_and_block_math_render_and_money_stays_text(browser: Browser, served: str, fake: FakeUpstream) -> None:  # noqa: F811
    page = _page(browser, served)
    fake.push(Behaviour(reply="Inline $x^2 + y^2$ here; it costs $5 and $10, \\( a^2 \\) too. A block:\n\n"
                                "$$\\int_0^1 t\\,dt$$"))
    send(page, "Some math, please")
    reply_ended(page)
    answer = page.locator("#chatbot .message.bot").filter(has_text="Inline")
    expect(answer.locator(".katex")).to_have_count(3)
    expect(answer).to_contain_text("it costs $5 and $10,")  # money stays text
    expect(answer).not_to_contain_text("$x^2")
    page.context.close()
