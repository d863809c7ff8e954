"""A compared turn in a conversation (:mod:`chatbot.core.compare`), and what each model is sent of it later.

In a chat's messages a compared turn is the visitor's message followed by one *note* per column: an assistant
message whose ``metadata.id`` is ``compared:<model id>`` and whose ``metadata.title`` names the model (so a
reader that knows nothing of compares shows it as a collapsed note and sends none of it upstream). A column
that produced no text has the content :data:`NO_REPLY`. Once the visitor picked a reply (Continue with this
reply), that reply follows the notes as a plain assistant message and the turn is an ordinary one.

"The whole history" of an unpicked compared turn, for one model (:func:`thread`): the message and that
model's own reply in it, as side-by-side tools do (each column continues its own thread); for a model that
was not compared there, or whose reply has no text, the turn's first reply with text; a turn where no reply
has text is left out, as a failed turn is. Every face applies it: the page and gradio_client's ``/compare``
to the history they are given, the chat tab to its history (with the picker's model), the HTTP API to its
stored conversation (:func:`stored_items`: a run of consecutive stored turns that ask different models the
same message is one compared turn, which is how ``POST /compare/stream`` stores one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chatbot.core.history import _content_text

if TYPE_CHECKING:
    from chatbot.core.store import Message

PREFIX = "compared:"
#: A note's content when its column produced no text (a chat message cannot be empty).
NO_REPLY = "…"


def note(model: str, reply: str, title: str) -> dict[str, Any]:
    """One column of a compared turn, as a chat message (see the module's docstring)."""
    return {"role": "assistant", "content": reply or NO_REPLY,
            "metadata": {"title": title, "id": PREFIX + model, "status": "done"}}


def compared_model(item: object) -> str | None:
    """The model of a compared turn's note, or None when ``item`` is not one."""
    if not isinstance(item, Mapping) or item.get("role") != "assistant":
        return None
    metadata = item.get("metadata")
    ident = metadata.get("id") if isinstance(metadata, Mapping) else None
    return ident[len(PREFIX):] if isinstance(ident, str) and ident.startswith(PREFIX) else None


def answered_note(item: object) -> bool:
    """``item`` is a compared turn's column that produced text."""
    if compared_model(item) is None:
        return False
    text = _content_text(item.get("content")) if isinstance(item, Mapping) else ""
    return bool(text.strip()) and text != NO_REPLY


def _plain_reply(item: object) -> bool:
    return isinstance(item, Mapping) and item.get("role") == "assistant" and not item.get("metadata")


def _reply_for(notes: Sequence[Mapping[str, Any]], model: str | None) -> str | None:
    replies = [(compared_model(n), _content_text(n.get("content"))) for n in notes]
    usable = [(m, text) for m, text in replies if text.strip() and text != NO_REPLY]
    return next((text for m, text in usable if m == model), None) or next((text for _, text in usable), None)


def thread(items: object, model: str | None) -> object:
    """``items`` (a chat's messages, untrusted) with every unpicked compared turn as ``model`` continues it
    (see the module's docstring); ``items`` itself when it holds no compared turn."""
    if not isinstance(items, list | tuple) or not any(compared_model(item) is not None for item in items):
        return items
    out: list[Any] = []
    notes: list[Mapping[str, Any]] = []

    def settle(picked: bool) -> None:
        if notes and not picked:
            reply = _reply_for(notes, model)
            if reply is not None:
                out.append({"role": "assistant", "content": reply})
            elif out and isinstance(out[-1], Mapping) and out[-1].get("role") == "user":
                out.pop()  # nobody answered: the message is left out, as a failed turn's
        notes.clear()

    for item in items:
        if compared_model(item) is not None:
            notes.append(item)
            continue
        settle(picked=_plain_reply(item))
        out.append(item)
    settle(picked=False)
    return out


def compared_turn(message: str | list[dict], replies: Iterable[tuple[str, str]], title: str) -> list[dict[str, Any]]:
    """The chat messages of a compared turn: ``message``, then a note per ``(model, reply)`` titled
    ``title.format(model=model)``."""
    return [{"role": "user", "content": message},
            *(note(model, reply, title.format(model=model)) for model, reply in replies)]


def stored_items(messages: Sequence[Message], before: int, limit: int) -> list[dict[str, Any]]:
    """The context of a stored conversation for a turn at ``before`` (at most ``limit`` earlier messages), as
    chat messages: ended turns, a run of consecutive turns asking different models the same message as one
    compared turn. Turns still streaming are left out, and so are plain turns whose reply has no text (as
    :func:`chatbot.core.store.context_from` does)."""
    rows = [m for m in messages if before - limit <= m.seq < before]
    pairs = [(user, reply) for user, reply in zip(rows, rows[1:], strict=False)
             if user.role == "user" and reply.role == "assistant" and reply.seq == user.seq + 1
             and reply.status != "streaming"]
    groups: list[list[tuple[Message, Message]]] = []
    for user, reply in pairs:
        group = groups[-1] if groups else None
        if (group is not None and group[-1][1].seq + 1 == user.seq and group[0][0].content == user.content
                and reply.model not in {r.model for _, r in group}):
            group.append((user, reply))
        else:
            groups.append([(user, reply)])
    out: list[dict[str, Any]] = []
    for group in groups:
        user, reply = group[0]
        if len(group) > 1:
            out += compared_turn(user.content, [(r.model or "", r.content) for _, r in group], "{model}")
        elif reply.content:
            out += [{"role": "user", "content": user.content}, {"role": "assistant", "content": reply.content}]
    return out


__all__ = ["NO_REPLY", "PREFIX", "answered_note", "compared_model", "compared_turn", "note", "stored_items", "thread"]
