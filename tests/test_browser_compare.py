"""Compare mode in a real browser (chatbot/web/compare_view.py): pick three models, one message, the columns
stream together with their stats; Stop on one column closes only its upstream connection; the summary; the
columns stack on a phone; continuing with one reply puts it in the chat as the history of the next message.
With SWITCHBOARD_SCREENSHOTS set to a folder, writes compare.png there (the README's picture:
``SWITCHBOARD_SCREENSHOTS=docs/screenshots``); else into the test's own tmp_path, never into docs/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_kit import WAIT_MS, browser, needs_chromium, open_page, reply_ended, send  # noqa: F401
from conftest import make_settings, wait_until
from fake_upstream import Behaviour, FakeUpstream
from playwright.sync_api import Browser, Page, expect

import app as switchboard

pytestmark = [pytest.mark.browser, needs_chromium]

MODELS = ["fake/fast", "fake/slow", "fake/thinker"]
SHOTS = os.environ.get("SWITCHBOARD_SCREENSHOTS")


@pytest.fixture
def served(fake: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(fake.base_url, CHATBOT_MODELS=",".join(MODELS), CHATBOT_DB=str(tmp_path / "c.db"),
                             CHATBOT_BROWSER_SECRET="browser-compare-secret-0123456789")
    server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=60)
    try:
        yield server.url
    finally:
        server.stop()


def pick_models(page: Page, models: list[str]) -> None:
    box = page.locator("#compare-models input")
    for model in models:
        box.click()
        page.get_by_role("option", name=model, exact=True).click()
    page.locator("#compare-message textarea").click()  # close the list


def test_compare_in_the_browser(
    browser: Browser, served: str, fake: FakeUpstream, tmp_path: Path  # noqa: F811
) -> None:
    fake.by_model = {
        "fake/fast": Behaviour(reply='The fast answer: forty-two. <img src=x onerror="window.__pwn=1">', delay=0.01),
        "fake/slow": Behaviour(reply="slow words ", endless=True, delay=0.05),
        "fake/thinker": Behaviour(reply="Thought it through: 42.", reasoning="Hmm, let me see.", cost=0.0031),
    }
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    page = open_page(context.new_page(), served)
    page.get_by_text("Compare models").click()
    pick_models(page, MODELS)
    page.locator("#compare-message textarea").fill("What is the answer?")
    page.locator("#compare-go").click()

    for i, model in enumerate(MODELS):
        expect(page.locator(f"#compare-head-{i}")).to_contain_text(model)
    expect(page.locator("#compare-body-0")).to_contain_text("The fast answer: forty-two.")
    expect(page.locator("#compare-body-2")).to_contain_text("Thought it through: 42.")
    expect(page.locator("#compare-head-2")).to_contain_text("$0.0031")
    expect(page.locator("#compare-body-1")).to_contain_text("slow words slow words")
    expect(page.locator("#compare-head-0")).to_contain_text("first token")
    expect(page.locator("#compare-col-3")).to_be_hidden()  # three models, three columns

    assert page.evaluate("window.__pwn") is None  # model output is sanitized in the columns too
    page.locator("#compare-stop-1").click()
    slow = next(r for r in fake.requests if r.model == "fake/slow")
    wait_until(lambda: slow.disconnected_at is not None, timeout=WAIT_MS / 1000, what="the slow column closed")
    assert all(r.disconnected_at is None for r in fake.requests if r.model != "fake/slow")
    expect(page.locator("#compare-summary")).to_contain_text("Cheapest: fake/thinker")
    expect(page.locator("#compare-head-1")).to_contain_text("stopped")
    page.locator("#compare").screenshot(path=str(Path(SHOTS or tmp_path) / "compare.png"))

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the columns stack (once laid out again)

    def stacked() -> bool:
        boxes = [page.locator(f"#compare-col-{i}").bounding_box() for i in range(3)]
        return all(a and b and b["y"] >= a["y"] + a["height"] - 1 for a, b in zip(boxes, boxes[1:], strict=False))

    wait_until(stacked, timeout=WAIT_MS / 1000, what="the columns stacked on a phone")
    page.set_viewport_size({"width": 1280, "height": 1000})

    # comparing again without a pick: the first compared turn came back from the browser, and each column is
    # sent its own model's reply in it; Stop all closes every column
    expect(page.locator("#chatbot")).to_contain_text("fake/slow (compared)")
    page.locator("#compare-message textarea").fill("And then?")
    page.locator("#compare-go").click()
    again = lambda: {r.model: r for r in fake.requests if "And then?" in str(r.messages[-1:])}  # noqa: E731
    wait_until(lambda: len(again()) == 3 and again()["fake/slow"].chunks_sent > 0, timeout=WAIT_MS / 1000,
               what="the second compare streaming")
    page.locator("#compare-stop-all").click()
    wait_until(lambda: all(r.disconnected_at or r.finished_at for r in again().values()), timeout=WAIT_MS / 1000,
               what="Stop all closed every column")
    sent = {m: [x["content"] for x in r.messages if x["role"] != "system"] for m, r in again().items()}
    assert sent["fake/thinker"] == ["What is the answer?", "Thought it through: 42.", "And then?"]
    assert sent["fake/fast"][1].startswith("The fast answer") and sent["fake/slow"][1].startswith("slow words")
    expect(page.locator("#compare-summary")).to_contain_text("Cheapest")

    page.locator("#compare-pick-2").click()
    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("Thought it through: 42.")
    expect(chat).to_contain_text("fake/fast (compared)")
    expect(page.locator("#model input")).to_have_value("fake/thinker")
    send(page, "And why?")
    reply_ended(page)
    last = wait_until(lambda: next((r for r in fake.requests if "And why?" in str(r.messages)), None),
                      timeout=WAIT_MS / 1000, what="the next message sent upstream")
    assert last.model == "fake/thinker"
    assert [m["content"] for m in last.messages if m["role"] != "system"] == [
        "What is the answer?", "Thought it through: 42.", "And then?", "Thought it through: 42.", "And why?",
    ]
    context.close()
