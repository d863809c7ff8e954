"""Seen in a real browser (Debian's chromium, driven by Playwright): pick a model, watch a reply stream in
with its thinking block, open that block, press Stop mid-reply, keep the chat across a reload and a server
restart, export and import it, and use the interface in Spanish. Screenshots go to a temporary folder; to
refresh the README's pictures on purpose, name the folder: ``SWITCHBOARD_SCREENSHOTS=docs/screenshots python -m
pytest -m browser`` writes docs/screenshots/*.png and the README's docs/screenshot.png (the folder's parent)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_kit import send
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect, sync_playwright

import app as switchboard
from chatbot.core.upstream import Upstream

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
#: A folder (relative to the repository, or absolute) for the screenshots instead of a temporary one.
SHOTS_ENV = "SWITCHBOARD_SCREENSHOTS"
SECRET = "browser-test-secret-0123456789"
VIEWPORT = {"width": 1280, "height": 1000}

QUESTION = "Is 1,001 a prime number?"
THOUGHT = ("1,001 is odd and its digits sum to 2, so 2 and 3 do not divide it. Try 7: 7 × 143 = 1,001. "
           "So it is not prime; 143 = 11 × 13.")
ANSWER = "No. 1,001 = 7 × 11 × 13, so it has divisors other than 1 and itself."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="the browser test needs Debian's chromium at /usr/bin/chromium (apt install chromium)"),
]


def _docs() -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in (ROOT / "docs").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where screenshots go: $SWITCHBOARD_SCREENSHOTS when set, else a temporary folder. Without the
    setting, a run leaves the tracked docs/ as it found it."""
    chosen = os.environ.get(SHOTS_ENV)
    before = _docs()
    yield ROOT / chosen if chosen else tmp_path_factory.mktemp("screenshots")
    if not chosen:
        assert _docs() == before, "a browser test wrote into docs/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=15_000)  # bounded waits for events, roomy enough for a busy CI machine
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


class App:
    """The app on a fixed port (the browser keeps saved chats per origin, so a restart must reuse it)."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.demo = None
        self.settings = make_settings(fake.base_url, CHATBOT_BROWSER_SECRET=SECRET)

    def start(self) -> App:
        self.settings = make_settings(self.fake.base_url, CHATBOT_BROWSER_SECRET=SECRET)
        self.demo = switchboard.build(self.settings)
        switchboard.launch(self.demo, self.settings, server_port=self.port, prevent_thread_lock=True, quiet=True)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self.demo is not None:
            self.demo.close()
            self.demo = None


@pytest.fixture
def app(fake: FakeUpstream) -> Iterator[App]:
    running = App(fake).start()
    yield running
    running.stop()


def open_page(browser: Browser, url: str, locale: str) -> Page:
    context = browser.new_context(locale=locale, viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#chatbot")
    expect(page.locator("#saved-chats")).to_be_visible()
    return page


#: The bot's answer as shown (messages that are not a thinking block or a note).
ANSWER_JS = """() => Array.from(document.querySelectorAll('#chatbot [data-testid="bot"]'))
    .filter(e => !e.querySelector('.thought-group')).map(e => e.innerText.trim()).join('\\n')"""
#: Whether the thinking block is open (null: there is none).
THINKING_JS = """() => { const t = Array.from(document.querySelectorAll('#chatbot .thought-group .title'))
    .find(e => /Thinking|Pensando/.test(e.innerText)); return t ? t.classList.contains('expanded') : null }"""


def answer_text(page: Page) -> str:
    return page.evaluate(ANSWER_JS)


def record_states(page: Page) -> None:
    """From now on the page itself records each (answer, thinking open) the chat shows, at every change of
    the chat's DOM: a reply that streams in pieces is seen in pieces however slowly the test polls."""
    page.evaluate(f"""() => {{
        const answer = {ANSWER_JS}, thinking = {THINKING_JS};
        window.__states = [];
        const read = () => {{
            const state = [answer(), thinking()], last = window.__states[window.__states.length - 1];
            if (!last || last[0] !== state[0] || last[1] !== state[1]) window.__states.push(state);
        }};
        new MutationObserver(read).observe(document.querySelector('#chatbot'),
            {{subtree: true, childList: true, characterData: true, attributes: true}});
    }}""")


def recorded_states(page: Page) -> list[tuple[str, bool | None]]:
    return [(text, state) for text, state in page.evaluate("() => window.__states")]


def screenshot(page: Page, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => { for (const e of [document.scrollingElement, ...document.querySelectorAll('*')]) "
                  "{ if (e && e.scrollTop) e.scrollTop = 0 } }")
    path = folder / name
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_chat_stream_thinking_stop_and_saved_chats(
    browser: Browser, app: App, fake: FakeUpstream, tmp_path: Path, shots: Path
) -> None:
    page = open_page(browser, app.url, "en-US")
    expect(page.locator("#new-chat")).to_have_text("New chat")
    expect(page.locator("#gauge")).to_contain_text("Context:")

    # Pick a model by typing to search: the gauge follows the model's window.
    page.locator("#model input").fill("reason")
    page.get_by_role("option", name="reasoning · o3").click()
    upstream = Upstream(app.settings)
    budget = upstream.budget(upstream.resolve("reasoning"))[0]
    expect(page.locator("#gauge")).to_contain_text(f"of {budget:,} tokens")

    # The reply streams in: first the thinking block, open; then the answer, with the block closed.
    before = page.locator("#context-gauge").get_attribute("data-used")
    fake.push(Behaviour(reasoning=THOUGHT, reply=ANSWER, chunk_size=3, delay=0.04))
    record_states(page)
    send(page, QUESTION)
    # the docs' picture of the thinking block open mid-reply, when this machine shows it long enough to take
    page.wait_for_function(f"""() => {{ const shown = document.querySelector('#chatbot').innerText;
        return ({THINKING_JS})() === true && shown.length > 80 || shown.includes('tokens in') }}""", timeout=60_000)
    if page.evaluate(THINKING_JS) is True:
        screenshot(page, shots, "chat-thinking-live.png")
    expect(page.locator("#chatbot")).to_contain_text("tokens in", timeout=60_000)
    snapshots = recorded_states(page)
    final = answer_text(page)
    assert final.endswith(ANSWER)
    partial = {text for text, _ in snapshots if text and text != ANSWER and ANSWER.startswith(text)}
    assert partial, "the answer never showed in pieces"
    assert any(state is True and ANSWER[:3] not in text for text, state in snapshots), "thinking was not live"
    assert all(state is False for text, state in snapshots if ANSWER[:12] in text), "thinking stayed open"
    assert fake.last.model == "o3"

    # The cost line, the session total and the saved chat are there; open the thinking block.
    expect(page.locator("#chatbot")).to_contain_text("tokens in")
    expect(page.locator("#session-total")).to_contain_text("1 reply")
    expect(page.locator("#context-gauge")).not_to_have_attribute("data-used", before)  # the conversation counts
    page.locator("#chatbot .thought-group .title", has_text="Thinking").click()
    expect(page.locator("#chatbot .thought-group", has_text="Thinking")).to_contain_text("7 × 143 = 1,001")
    page.wait_for_function(  # the block has finished opening (it animates its height)
        "() => [...document.querySelectorAll('#chatbot .thought-group .content')]"
        ".some(e => e.clientHeight > 0 && e.clientHeight >= e.scrollHeight)"
    )
    expect(page.locator("#saved-chats")).to_contain_text(QUESTION)
    shot = screenshot(page, shots, "chat-thinking-cost.png")
    if os.environ.get(SHOTS_ENV):  # refreshing the docs on purpose: the README's picture too
        shutil.copyfile(shot, shots.parent / "screenshot.png")

    # Stop mid-reply closes the upstream connection; the partial reply stays and is saved.
    fake.push(Behaviour(reply="Once upon a time " * 200, chunk_size=4, delay=0.05))
    send(page, "Tell me a long story.")
    expect(page.locator("#chatbot")).to_contain_text("Once upon a time Once upon a time", timeout=20_000)
    gauge_before = page.locator("#context-gauge").get_attribute("data-used")
    page.locator("#message").get_by_role("button", name="Stop").click()
    fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=5)
    assert fake.last.finished_at is None and fake.last.chunks_sent < 800  # stopped mid-reply
    expect(page.locator("#message textarea")).to_be_enabled()
    expect(page.locator("#chatbot")).to_contain_text("Once upon a time Once upon a time")
    # What Stop saved comes back with the gauge, which now counts the partial story.
    expect(page.locator("#context-gauge")).not_to_have_attribute("data-used", gauge_before, timeout=15_000)

    # A reload and a server restart (same secret) keep the chat, with its model.
    page.reload()
    expect(page.locator("#chatbot")).to_contain_text("Tell me a long story.")
    expect(page.locator("#chatbot")).to_contain_text(ANSWER)
    app.stop()
    app.start()
    page.reload()
    page.wait_for_selector("#chatbot")
    expect(page.locator("#chatbot")).to_contain_text(QUESTION)
    expect(page.locator("#chatbot")).to_contain_text("Once upon a time")
    expect(page.locator("#model input")).to_have_value("reasoning · o3")

    # Export as JSON, start a new chat, import the file: the same conversation comes back as a second chat.
    with page.expect_download() as download:
        page.locator("#export-json").click()
    saved_file = tmp_path / download.value.suggested_filename
    download.value.save_as(saved_file)
    assert saved_file.suffix == ".json"
    exported = json.loads(saved_file.read_text())
    assert exported["messages"][0]["content"] == QUESTION
    page.locator("#new-chat").click()
    expect(page.locator("#chatbot")).not_to_contain_text(QUESTION)
    with page.expect_file_chooser() as chooser:
        page.locator("#import-json").click()
    chooser.value.set_files(saved_file)
    expect(page.locator("#saved-chats label")).to_have_count(2)
    expect(page.locator("#chatbot")).to_contain_text("Once upon a time")
    with page.expect_download() as again:
        page.locator("#export-json").click()
    assert json.loads(Path(again.value.path()).read_text())["messages"] == exported["messages"]
    page.context.close()


def test_the_interface_and_its_messages_in_spanish(
    browser: Browser, app: App, fake: FakeUpstream, shots: Path
) -> None:
    page = open_page(browser, app.url, "es-ES")
    expect(page.locator("#new-chat")).to_have_text("Nuevo chat")
    expect(page.locator("#model")).to_contain_text("Modelo")
    expect(page.locator("#gauge")).to_contain_text("Contexto:")
    fake.push(Behaviour(reasoning="El usuario saluda; respondo con brevedad.", reply="¡Hola! ¿En qué te ayudo?"),
              Behaviour(status=402))
    send(page, "Hola")
    expect(page.locator("#chatbot .thought-group .title", has_text="Pensando")).to_be_visible()
    expect(page.locator("#chatbot")).to_contain_text("tokens de entrada")
    expect(page.locator("#session-total")).to_contain_text("Esta sesión")
    send(page, "¿Sigues ahí?")
    expect(page.locator("#chatbot")).to_contain_text("la cuenta no tiene saldo")
    assert re.search(r"Error code|Traceback", page.locator("#chatbot").inner_text()) is None
    screenshot(page, shots, "chat-es.png")
    page.context.close()


def test_attachments_from_the_browser(
    browser: Browser, app: App, fake: FakeUpstream, tmp_path: Path, shots: Path
) -> None:
    from PIL import Image

    image = tmp_path / "red-square.png"
    Image.new("RGB", (40, 40), (220, 20, 20)).save(image)
    notes = tmp_path / "notes.txt"
    notes.write_text("milk, eggs, bread")
    page = open_page(browser, app.url, "pt-BR")
    expect(page.locator("#new-chat")).to_have_text("Novo chat")
    page.locator("#message input[type=file]").set_input_files([str(image), str(notes)])
    expect(page.locator("#message").get_by_role("listitem")).to_have_count(2)  # both uploaded
    send(page, "O que é isto?")
    expect(page.locator("#chatbot")).to_contain_text("tokens de entrada")
    content = fake.last.body["messages"][-1]["content"]
    assert content[0]["type"] == "text" and "O que é isto?" in content[0]["text"]
    assert "📎 notes.txt" in content[0]["text"] and "milk, eggs, bread" in content[0]["text"]
    assert content[1]["type"] == "image_url" and content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    screenshot(page, shots, "chat-pt-attachments.png")
    page.context.close()
