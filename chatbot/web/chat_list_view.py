"""The saved chats' list as the sidebar shows it (Gradio): a search box and the chats grouped by age
(see :mod:`chatbot.web.chat_list`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr

import chatbot.web.chat_labels  # noqa: F401 - the group names
from chatbot.web.chat_list import GROUPS, grouped
from chatbot.web.labels import ui


class ChatList:
    """The list in the sidebar: a search box, one radio group per age group (a group with no chat is
    hidden) and a note while there is no chat at all. Every update shows the store's current chat chosen in
    its group and no choice in the others."""

    #: How many outputs :meth:`updates` has.
    size = len(GROUPS) + 1

    def render(self) -> None:
        self.search = gr.Textbox(
            label=ui("search_chats"), placeholder=ui("search_chats"), max_lines=1, show_label=False,
            elem_id="chat-search",
        )
        with gr.Column(elem_id="saved-chats"):
            self.groups = [
                gr.Radio(choices=[], value=None, label=ui(label), visible=False, elem_id=f"saved-chats-{key}")
                for key, label, _ in GROUPS
            ]
            self.empty = gr.Markdown(ui("no_chats_yet"), elem_id="no-chats")

    def updates(self, store: Mapping[str, Any], query: str = "") -> list[Any]:
        """The groups for ``store`` (only the chats ``query`` matches)."""
        current = store.get("current")
        out = []
        for items in grouped(store, query).values():
            chosen = current if any(chat_id == current for _, chat_id in items) else None
            out.append(gr.Radio(choices=items, value=chosen, visible=bool(items)))
        return [*out, gr.Markdown(visible=not store.get("chats"))]

    def chosen(self, shown: str | None) -> list[Any]:
        """The groups with the chat on screen chosen again (their choices as they are)."""
        return [*(gr.Radio(value=shown) for _ in GROUPS), gr.skip()]
