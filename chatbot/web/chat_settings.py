"""The chat settings panel: the chat's own system prompt (with a few presets), temperature and reply
length. Its values go with every message to the chat function (:meth:`ChatSettings.params`), are saved
with the chat (chatbot.web.chats) and exported with it (chatbot.web.chat_files); opening a chat puts its
values back (:meth:`ChatSettings.values`).

``CHATBOT_CHAT_SETTINGS``: ``edit`` (the default) lets visitors change them; ``fixed`` shows the panel
read-only; ``hidden`` leaves it out. Either way the server decides (chatbot.core.params.effective): with
``fixed`` or ``hidden`` whatever a browser sends is ignored. The operator's own system prompt is never
shown: an empty box means "the app's default".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr

import chatbot.web.chat_labels  # noqa: F401 - the panel's words
from chatbot.core.i18n import language_of, text
from chatbot.core.params import MAX_SYSTEM_CHARS, Params, editable
from chatbot.core.settings import Settings
from chatbot.web.labels import ui

#: The presets offered, "default" first (the app's own system prompt); each other one a text in i18n.
PRESETS = ("default", "concise", "teacher", "coder", "translator")


class ChatSettings:
    """Render with :meth:`render` (in the sidebar), wire with :meth:`wire`; :attr:`inputs` go to the chat
    function after its other inputs, and are what the saved-chats panel saves and puts back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def render(self) -> None:
        editing = editable(self.settings)
        with gr.Accordion(ui("chat_settings"), open=False, visible=self.settings.chat_settings != "hidden",
                          elem_id="chat-settings"):
            if not editing:
                gr.Markdown(ui("settings_fixed"))
            self.preset = gr.Dropdown(
                choices=[(ui(f"preset_{key}"), key) for key in PRESETS], value="default", label=ui("preset"),
                interactive=editing, elem_id="chat-preset",
            )
            self.system = gr.Textbox(
                label=ui("system_prompt"), info=ui("system_info"), lines=3, max_lines=8, max_length=MAX_SYSTEM_CHARS,
                interactive=editing, elem_id="chat-system",
            )
            # No minimum/maximum: Gradio would raise on a value out of range (and lock the chat); the server
            # bounds the values (chatbot.core.params).
            self.temperature = gr.Number(
                value=None, label=ui("temperature"), info=ui("temperature_info"), step=0.1, interactive=editing,
                elem_id="chat-temperature",
            )
            self.max_tokens = gr.Number(
                value=None, label=ui("reply_length"), info=ui("reply_length_info"), precision=0, step=256,
                interactive=editing, elem_id="chat-max-tokens",
            )

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.system, self.temperature, self.max_tokens]

    def wire(self) -> None:
        self.preset.input(self.preset_prompt, [self.preset], [self.system], api_visibility="private",
                          show_progress="hidden", queue=False)

    def preset_prompt(self, key: str | None, request: gr.Request) -> str:
        """The system prompt of a preset, in the visitor's language ("" for the app's default)."""
        if key not in PRESETS or key == "default":
            return ""
        return text(f"prompt_{key}", language_of(request))

    @staticmethod
    def params(system: object, temperature: object, max_tokens: object) -> Params:
        """The panel's values as the core takes them (bounded there)."""
        return Params.of({"system": system, "temperature": temperature, "max_tokens": max_tokens})

    @staticmethod
    def values(chat: Mapping[str, Any] | None) -> tuple[str, float | None, int | None]:
        """What the panel shows for a saved chat (or a new one: empty, the app's defaults)."""
        params = Params.of(chat.get("settings") if chat else None)
        return params.system or "", params.temperature, params.max_tokens
