"""The first screen's events: the example prompts of an empty chat (in the visitor's language; a click puts
one in the message box, nothing is sent), and the server-written text (gauge, session line, examples)
rendered again when the visitor picks another language in Gradio's Settings (the page's script clicks the
hidden ``#sb-relang`` button then; see chatbot/web/assets.py)."""

from __future__ import annotations

from typing import Any, cast

import gradio as gr

from chatbot.core.i18n import DEFAULT_LANGUAGE, language_of
from chatbot.core.usage import Totals
from chatbot.web.labels import EXAMPLES


def chat_height(banner: bool = False) -> str:
    """The chat's height: what is left of the window under the title (and the demo ``banner``), the message
    box, the model picker and the gauge, so that nothing scrolls away on a 1366x900 screen; never under
    260 px."""
    return f"max(260px, calc(100dvh - {440 if banner else 360}px))"


def examples(lang: str = DEFAULT_LANGUAGE) -> list[Any]:
    """The example prompts of an empty chat (Chatbot ``examples``), in ``lang`` (English when the language
    is not offered)."""
    return cast(list[Any], [{"text": prompt} for prompt in EXAMPLES.get(lang, EXAMPLES[DEFAULT_LANGUAGE])])


def chosen_example(evt: gr.SelectData) -> dict[str, Any]:
    """The message box's value for a clicked example: its text, no file (a malformed event: empty)."""
    value = evt.value if isinstance(evt.value, dict) else {}
    text = value.get("text")
    return {"text": text if isinstance(text, str) else "", "files": []}


def wire_first_screen(
    chat: Any, demo: gr.Blocks, *, model: gr.Dropdown, chatbot: gr.Chatbot, textbox: gr.MultimodalTextbox,
    gauge: gr.HTML, session: gr.Markdown, totals: gr.State,
) -> None:
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", "queue": False}

    def load(request: gr.Request) -> Any:
        return gr.Chatbot(examples=examples(language_of(request)))

    def relang(model_name: str | None, history: list, session_totals: dict, request: gr.Request) -> tuple:
        lang = language_of(request)
        kept = Totals.from_dict(session_totals)
        line = kept.render(lang, chat.settings.demo) if kept.replies else gr.skip()
        shown = chat.gauge(model_name, history, lang, getattr(request, "session_hash", None))
        return shown, line, gr.Chatbot(examples=examples(lang))

    relang_button = gr.Button("relang", elem_id="sb-relang", render=True)
    demo.load(load, None, chatbot, **quiet)
    relang_button.click(relang, [model, chatbot, totals], [gauge, session, chatbot], **quiet)
    chatbot.example_select(chosen_example, None, textbox, **quiet)
