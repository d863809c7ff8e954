"""The message box: Gradio's MultimodalTextbox with its API schema built once for the class.

ChatInterface updates the box four times per message (clear and lock it, show Stop, show Send, unlock
it), and for each update Gradio builds a new component and its config, whose pydantic JSON schema (the
same for every instance: it depends only on the class's data model) took about half of each of those
requests' CPU (py-spy on ``run/predict``: 11.3 ms a request before, 5.9 ms after, on an idle 2-core
machine). ``is_template`` keeps the config's type ``multimodaltextbox``, so the front end is Gradio's own.

Gradio writes a ``.pyi`` stub next to the module of any component class it sees defined (it skips a
read-only folder without an error); ``chatbot/web/message_box.pyi`` is that stub, left out of git.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class MessageBox(gr.MultimodalTextbox):
    """A MultimodalTextbox whose ``api_info`` is computed once per class."""

    is_template = True
    _class_schema: dict[str, Any] | None = None

    def api_info(self) -> dict[str, Any]:
        cls = type(self)
        if cls._class_schema is None:
            cls._class_schema = super().api_info()
        return cls._class_schema
