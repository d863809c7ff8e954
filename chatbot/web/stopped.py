"""A reply the visitor stopped (Stop, or Escape): it says so, with the model that wrote it and the tokens it
used, and those count in the session's total.

Stop cancels the chat function mid-stream, so nothing it measured comes back: the tokens are estimated
from what the visitor saw (the conversation up to the question, as it went upstream, and the partial
answer), priced at the model's list prices (none in demo mode). The note is an app note (it has a title),
never sent upstream.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from chatbot.core.events import Usage
from chatbot.core.i18n import language_of, text
from chatbot.core.tokens import counter_for
from chatbot.core.usage import Totals, reply_line

STOPPED_ID = "switchboard-stopped"


def split_at_question(messages: object) -> tuple[list, list]:
    """(the conversation up to the last question, what came after it: the partial answer)."""
    items = list(messages) if isinstance(messages, list) else []
    last = max((i for i, m in enumerate(items) if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    return items[: last + 1], items[last + 1:]


def answer_text(messages: list) -> str:
    """The answer's text in ``messages`` (notes, with a title, left out)."""
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or (message.get("metadata") or {}).get("title"):
            continue
        content = message.get("content")
        for part in content if isinstance(content, list) else [content]:
            found = part.get("text") if isinstance(part, dict) else part
            if isinstance(found, str):
                parts.append(found)
    return "".join(parts)


def estimate(chat: Any, model_name: str | None, messages: object, session: str | None) -> Usage | None:
    """What the stopped reply used, estimated (None for a model the app does not offer)."""
    model = chat.upstream.resolve(model_name)
    if model is None:
        return None
    asked, answered = split_at_question(messages)
    prompt = chat.settings.system_prompt
    sent = ([{"role": "system", "content": prompt}] if prompt else []) + chat.history_for_upstream(
        asked, model, images="estimate" if model.vision else "skip", session=session)
    counter = counter_for(model.id)
    prompt_tokens, completion_tokens = counter.count_messages(sent), counter.count_text(answer_text(answered))
    cost = model.cost(prompt_tokens, completion_tokens)
    return Usage(prompt_tokens, completion_tokens, cost, "catalogue" if cost is not None else "unknown")


def wire_stopped(chat: Any, *, textbox: gr.MultimodalTextbox, chatbot: gr.Chatbot, chatbot_state: gr.State,
                 model: gr.Dropdown, totals: gr.State, session: gr.Markdown) -> Any:
    """On Stop: the "stopped" note after the partial answer, and its tokens in the session's total. Returns
    the event, so the saved chat is saved after it, with the note (chatbot.web.chats_panel)."""

    def stopped(messages: list, model_name: str | None, session_totals: dict, request: gr.Request) -> tuple:
        lang = language_of(request)
        try:
            usage = estimate(chat, model_name, messages, getattr(request, "session_hash", None))
        except Exception:  # a note is never worth an error
            usage = None
        model = chat.upstream.resolve(model_name)
        name = model.id if model is not None else None
        line = reply_line(usage, lang, name, chat.settings.demo) if usage is not None else f"`{name or '?'}`"
        note = {"role": "assistant", "content": {"type": "text", "text": ""},
                "metadata": {"title": f"■ {text('stopped', lang)} · {line}", "id": STOPPED_ID, "status": "done"}}
        shown = [*(messages or []), note]
        kept = Totals.from_dict(session_totals)
        kept = kept.add(usage) if usage is not None else kept
        return shown, shown, kept.as_dict(), kept.render(lang, chat.settings.demo)

    return textbox.stop(stopped, [chatbot, model, totals], [chatbot, chatbot_state, totals, session],
                        api_visibility="private", show_progress="hidden", queue=False)
