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

import inspect
from typing import Any

import gradio as gr


class MessageBox(gr.MultimodalTextbox):
    """A MultimodalTextbox whose ``api_info`` is computed once per class, that keeps its placeholder and
    stays usable while a reply streams.

    ChatInterface clears the box with ``placeholder=""`` and locks it (``interactive=False``) at each
    message: the placeholder would be gone for good, and a locked box loses the focus. Here an empty
    placeholder keeps the box's own and a lock leaves it usable (the page's script sends nothing on Enter
    while a reply streams, and Escape stops it: chatbot/web/assets.py)."""

    is_template = True
    _class_schema: dict[str, Any] | None = None
    #: The placeholder an update that clears it gets back (the first box's).
    _placeholder: Any = None

    def __init__(self, value: Any = None, **kwargs: Any) -> None:
        placeholder = kwargs.get("placeholder")
        if placeholder:
            type(self)._placeholder = type(self)._placeholder or placeholder
        elif "placeholder" in kwargs and type(self)._placeholder is not None:
            kwargs["placeholder"] = type(self)._placeholder
        if kwargs.get("interactive") is False:
            kwargs["interactive"] = True
        super().__init__(value, **kwargs)

    def api_info(self) -> dict[str, Any]:
        cls = type(self)
        if cls._class_schema is None:
            cls._class_schema = super().api_info()
        return cls._class_schema


# Gradio reads a component's configuration from its __init__'s parameters: MessageBox takes the box's own.
MessageBox.__init__.__signature__ = inspect.signature(gr.MultimodalTextbox.__init__)  # type: ignore[attr-defined]
