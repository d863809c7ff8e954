"""The visitor's message as the multimodal message box sends it (``{"text": ..., "files": [...]}``, or a
plain string from gradio_client) and as the chat shows it back.

The box's value comes from the browser: any shape is read without raising, and a file entry is only a
path and a name here (whether the session may have it read is chatbot.web.uploads' business).
"""

from __future__ import annotations

import os
from typing import Any


def files_of(message: dict) -> list[tuple[str, str | None]]:
    """(path, name) of the files of a multimodal message: paths from the box, or file dicts on a retry."""
    found: list[tuple[str, str | None]] = []
    for item in message.get("files") or []:
        if isinstance(item, str) and item:
            found.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("path"), str) and item["path"]:
            name = item.get("orig_name")
            found.append((item["path"], name if isinstance(name, str) else None))
    return found


def words(message: object) -> str:
    """The text of a message (a multimodal box's dict or a string)."""
    found = message.get("text") if isinstance(message, dict) else message
    return found if isinstance(found, str) else ""


def text_only(message: object) -> bool:
    """Whether a message has no attached files (nothing to read from disk)."""
    return not (isinstance(message, dict) and files_of(message))


def user_message(message: object) -> dict[str, Any]:
    """The visitor's message as the chat shows it: attached files, then the text."""
    if not isinstance(message, dict):
        return {"role": "user", "content": [_text(message if isinstance(message, str) else "")]}
    parts: list[dict[str, Any]] = [
        {"type": "file", "file": {"path": path, "orig_name": name or os.path.basename(path)}}
        for path, name in files_of(message)
    ]
    text = words(message)
    if text:
        parts.append(_text(text))
    return {"role": "user", "content": parts}


def _text(text: str) -> dict[str, str]:
    """A text part (Gradio passes it through as it is; a plain string would go through inspect.cleandoc)."""
    return {"type": "text", "text": text}
