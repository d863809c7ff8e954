"""The first screen's server side (chatbot/web/first_screen.py): example prompts in each language, a click on
one only fills the box, and the page's own CSS and script are served (the browser side is
tests/test_browser_first_screen.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from chatbot.core.i18n import LANGUAGES
from chatbot.web import assets
from chatbot.web.first_screen import chosen_example, examples


def test_three_example_prompts_in_each_language() -> None:
    shown = {lang: [e["text"] for e in examples(lang)] for lang in LANGUAGES}
    assert all(len(prompts) == 3 and all(prompts) for prompts in shown.values())
    assert len({tuple(p) for p in shown.values()}) == len(LANGUAGES)  # translated, not copied
    assert examples("de") == examples("en")


def test_a_clicked_example_fills_the_box_and_nothing_else() -> None:
    def picked(value: Any) -> dict:
        return chosen_example(SimpleNamespace(value=value))  # type: ignore[arg-type]

    assert picked({"text": "Hi", "files": ["/etc/passwd"]}) == {"text": "Hi", "files": []}
    assert picked("not a dict") == {"text": "", "files": []} == picked({"text": 3})


def test_the_page_gets_its_css_and_script() -> None:
    from conftest import make_settings

    import app as switchboard

    options = switchboard.presented(make_settings("http://127.0.0.1:9/v1"))
    assert options["run_history"] is False  # no developer "Run history" (nor replies kept in it)
    assert options["css"] == assets.css() and ".record-button" in options["css"]
    assert options["head"] == assets.head() and "Escape" in options["head"] and "Accept-Language" in options["head"]
