"""The saved-chats panel's download buttons: Gradio's DownloadButton with its API schema built once for the class.

Every change to the saved chats updates the selected chat's two export buttons, and for each update Gradio
builds a new component and its config, whose pydantic JSON schema (FileData's: the same for every instance)
was a twentieth of the app's CPU with 100 chat-tab visitors (py-spy). ``is_template`` keeps the config's type
``downloadbutton``, so the front end is Gradio's own (as :mod:`chatbot.web.message_box` does for the box).
Gradio writes a ``.pyi`` stub next to this module (left out of git).
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class ExportButton(gr.DownloadButton):
    is_template = True
    _class_schema: dict[str, Any] | None = None

    def api_info(self) -> dict[str, Any]:
        cls = type(self)
        if cls._class_schema is None:
            cls._class_schema = super().api_info()
        return cls._class_schema
