"""Earlier answers kept when a question is answered again (the chat's ↻ Retry, "regenerate").

Gradio's retry takes the last answer off the chat and asks again; the saved chat still holds the answer
it replaces. When a reply is saved, :func:`keep_previous` compares the two: if the new conversation
answers again the last question of the saved one, the earlier answer (its text) is kept as a collapsed
note ("↺ Previous answer") just before the new one. Notes carry a title, so they are never sent upstream
(chatbot.core.history); every earlier answer stays reachable, each in its own note, oldest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chatbot.core.i18n import text

NOTE_ID = "previous-answer"


def _bare(message: Mapping[str, Any]) -> tuple[Any, ...]:
    """What two saves of one message have in common (attachments by name: their seals may differ)."""
    parts = []
    for part in message.get("content") or []:
        if part.get("type") == "text":
            parts.append(part.get("text"))
        elif part.get("type") == "file":
            parts.append(("file", (part.get("file") or {}).get("orig_name")))
    return message.get("role"), bool(message.get("metadata")), tuple(parts)


def _is_question(message: Mapping[str, Any]) -> bool:
    return message.get("role") == "user" and not message.get("metadata")


def _answer_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The answer in a reply's messages: the text of its assistant messages that are not notes."""
    return "\n\n".join(
        part["text"] for m in messages if m.get("role") == "assistant" and not m.get("metadata")
        for part in m.get("content") or [] if part.get("type") == "text" and part.get("text")
    )


def note(answer: str, lang: str = "en") -> dict[str, Any]:
    """A collapsed note holding an earlier answer."""
    metadata = {"title": text("previous_answer", lang), "status": "done", "id": NOTE_ID}
    return {"role": "assistant", "content": [{"type": "text", "text": answer}], "metadata": metadata}


def keep_previous(saved: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]],
                  lang: str = "en") -> list[dict[str, Any]] | None:
    """``new`` (cleaned messages) with the answer it replaces kept, when it answers again the last question
    of ``saved`` (the chat as saved before); None when it does not (a new question, an edit, an Undo)."""
    last = max((i for i, m in enumerate(new) if _is_question(m)), default=None)
    if not saved or last is None or len(saved) <= last + 1:
        return None
    head, old_tail, new_tail = list(new[: last + 1]), list(saved[last + 1:]), list(new[last + 1:])
    if [_bare(m) for m in saved[: last + 1]] != [_bare(m) for m in head] or not new_tail:
        return None
    if any(_is_question(m) for m in old_tail) or [_bare(m) for m in old_tail] == [_bare(m) for m in new_tail]:
        return None
    answer = _answer_text(old_tail)
    if not answer:  # the earlier attempt had no answer (a failure): nothing worth keeping
        return None
    earlier = [dict(m) for m in old_tail if (m.get("metadata") or {}).get("id") == NOTE_ID]
    fresh = [m for m in new_tail if (m.get("metadata") or {}).get("id") != NOTE_ID]
    return [*map(dict, head), *earlier, note(answer, lang), *map(dict, fresh)]
