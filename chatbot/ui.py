"""The Gradio interface: a ChatInterface whose generator reshapes the core's events into chat messages.

Rules this module keeps (each one a Gradio 6.31 trap, see DEVELOPERS.md):
- nothing escapes the generator: a failure is an assistant message, so the textbox never locks;
- updates are coalesced to at most ~25 a second, the first token shown at once;
- while the upstream is silent the generator still yields about twice a second, so a closed tab is
  noticed and the upstream closed;
- text is yielded as ``{"type": "text", "text": ...}`` parts, which Gradio does not pass through
  ``inspect.cleandoc`` (a plain string would lose code indentation and tabs);
- the history Gradio passes in is rebuilt on the server from user and assistant text only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from .config import Settings
from .demo import HOW_TO_CONNECT
from .errors import render
from .history import clean_history
from .upstream import (
    Done,
    ErrorEvent,
    Event,
    HistoryTrimmed,
    Idle,
    ReasoningDelta,
    TextDelta,
    Upstream,
    Usage,
)

log = logging.getLogger("switchboard.ui")

#: Shortest gap between two updates of one stream (25 a second at most).
UPDATE_INTERVAL = 0.04
#: Longest gap between two yields while the upstream is silent, so Gradio notices a closed tab.
KEEPALIVE_INTERVAL = 0.5

NOTE_ID = "switchboard-note"


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


class ReplyView:
    """What one reply looks like in the chat, built up from the core's events."""

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.text: list[str] = []
        self.trimmed = 0
        self.error: ErrorEvent | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.finished = False

    def apply(self, event: Event) -> bool:
        """Take one event; True when what is shown changed."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, HistoryTrimmed):
            self.trimmed = event.dropped_turns
        elif isinstance(event, Usage):
            self.usage = event
            return False
        elif isinstance(event, Done):
            self.finish_reason = event.finish_reason
            self.finished = True
        elif isinstance(event, ErrorEvent):
            self.error = event
            self.finished = True
        else:
            return False
        return True

    @property
    def reply(self) -> str:
        return "".join(self.text)

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.trimmed:
            note = render("trimmed_note", turns=self.trimmed)
            out.append(_note(f"ℹ️ {note}", note, status="done"))
        if self.reasoning:
            status = "done" if (self.text or self.finished) else "pending"
            out.append(
                {
                    "role": "assistant",
                    "content": _text("".join(self.reasoning)),
                    "metadata": {"title": "Thinking", "status": status, "id": "thinking"},
                }
            )
        reply = self.reply
        if reply:
            out.append({"role": "assistant", "content": _text(reply)})
        if self.error is not None:
            message = self.error.error.text
            if self.error.partial:
                message = f"{render('cut_note')} {message}"
            out.append(_note(f"⚠️ {message}", message))
        return out

    def as_text(self) -> str:
        """The reply for API callers: the text, then any notes."""
        parts = [self.reply] if self.reply else []
        if self.error is not None:
            prefix = f"{render('cut_note')} " if self.error.partial else ""
            parts.append(f"⚠️ {prefix}{self.error.error.text}")
        return "\n\n".join(parts)


def _note(title: str, body: str, status: str | None = None) -> dict[str, Any]:
    """An app note: shown in the chat, never sent upstream (it carries a title, which marks it)."""
    metadata: dict[str, Any] = {"title": title, "id": NOTE_ID}
    if status:
        metadata["status"] = status
    return {"role": "assistant", "content": _text(body), "metadata": metadata}


async def coalesce(events: AsyncIterator[Event], view: ReplyView) -> AsyncIterator[ReplyView]:
    """Apply events to ``view`` and yield it at most every UPDATE_INTERVAL (the first change at once),
    and at least every KEEPALIVE_INTERVAL while the upstream is silent."""
    last = 0.0
    dirty = False
    async for event in events:
        if view.apply(event):
            dirty = True
        now = time.monotonic()
        if dirty and now - last >= UPDATE_INTERVAL:
            last, dirty = now, False
            yield view
        elif isinstance(event, Idle) and now - last >= KEEPALIVE_INTERVAL:
            last = now
            yield view
    if dirty or last == 0.0:
        yield view


class ChatUI:
    """Builds the Blocks app around one :class:`Upstream`."""

    def __init__(self, settings: Settings, upstream: Upstream) -> None:
        self.settings = settings
        self.upstream = upstream

    def history_for_upstream(self, history: object) -> list[dict[str, str]]:
        return clean_history(
            history, self.settings.max_history_messages, self.settings.max_history_chars,
            self.settings.max_message_chars,
        )

    async def respond(self, message: str, history: list[dict], model: str | None) -> AsyncIterator[list[dict]]:
        """The ChatInterface function."""
        view = ReplyView()
        try:
            plain = self.history_for_upstream(history)
            events = self.upstream.stream(message, plain, model)
            async for current in coalesce(events, view):
                yield current.messages()
        except Exception as exc:  # the chat must never lock: no exception leaves this generator
            log.error("chat handler failed: %s", type(exc).__name__)
            view.apply(ErrorEvent(_internal(), partial=bool(view.text)))
            yield view.messages()

    async def chat_api(
        self, message: str, model: str | None = None, history: list[dict] | None = None
    ) -> AsyncIterator[str]:
        """Programmatic chat: the reply text (streamed when called with ``submit``)."""
        view = ReplyView()
        try:
            plain = self.history_for_upstream(history or [])
            async for current in coalesce(self.upstream.stream(message, plain, model), view):
                yield current.as_text()
        except Exception as exc:
            log.error("chat API failed: %s", type(exc).__name__)
            view.apply(ErrorEvent(_internal(), partial=bool(view.text)))
            yield view.as_text()

    def build(self) -> gr.Blocks:
        settings = self.settings
        catalogue = settings.catalogue
        with gr.Blocks(title="Switchboard", analytics_enabled=False, fill_height=True) as demo:
            gr.Markdown("## Switchboard\nOne chat for every model behind your OpenAI-compatible API.")
            if settings.demo:
                gr.Markdown(f"> {HOW_TO_CONNECT}", elem_id="demo-banner")
            model = gr.Dropdown(
                choices=catalogue.choices(),
                value=catalogue.default,
                label="Model",
                filterable=True,
                allow_custom_value=settings.allow_any_model,
                elem_id="model",
            )
            chatbot = gr.Chatbot(
                label="Chat", elem_id="chatbot", height="70vh", buttons=["copy"], layout="bubble",
            )

            async def respond(message: str, history: list[dict], model: str | None) -> AsyncIterator[list[dict]]:
                async for update in self.respond(message, history, model):
                    yield update

            gr.ChatInterface(
                respond,
                chatbot=chatbot,
                additional_inputs=[model],
                concurrency_limit=None,
                cache_examples=False,
                api_visibility="private",
                fill_height=True,
            )

            async def chat(message: str, model: str = "", history: list[dict] | None = None) -> AsyncIterator[str]:
                """Send one message (with an optional earlier history) and get the reply text."""
                async for text in self.chat_api(message, model or None, history):
                    yield text

            gr.api(chat, api_name="chat", concurrency_limit=None)
        return demo


def _internal() -> Any:
    from .errors import Friendly

    return Friendly("internal", render("internal"))
