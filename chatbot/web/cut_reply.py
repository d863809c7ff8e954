"""A reply cut off before it ended: the server answering it died (a replica killed mid-stream) or the page went
away. The visitor finds their question, what had arrived, and a note that says so; they can send it again.

The saved chats live in the browser and change only through an event's outputs, so a reply reaches them
when it has ended (the panel's save after a reply, or Stop's). Until then the chat holds its turn in
progress as ``unfinished`` (see :mod:`chatbot.web.chats`): the question, saved when it is sent
(:func:`started`), then what the chat shows, saved every :data:`SAVE_EVERY` seconds while the reply streams
(:class:`ReplySaver`: the reply's own stream carries the saved chats then, see :mod:`chatbot.web.message_steps`;
no request of its own). The reply's own save ends it. A chat shown while still unfinished (Gradio reloads a page
whose server went away; behind the balancer, from a live replica) shows the saved turn and the note
(:func:`conversation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import gradio as gr

import chatbot.web.chat_labels  # noqa: F401 - the note's words
from chatbot.core.i18n import language_of, text
from chatbot.web import chats
from chatbot.web.latest_stores import LatestStores
from chatbot.web.replying import Replying

CUT_ID = "switchboard-cut"
#: How often a streaming reply's text is saved in the browser (seconds): what a dead server's visitor keeps.
SAVE_EVERY = 2.0


def question(message: object) -> list[dict[str, Any]]:
    """The visitor's message as chat messages, from the message box's value (``{"text", "files"}``, files
    as paths or file dicts) or a string; :func:`chatbot.web.chats.clean_messages` decides which files are kept."""
    if not isinstance(message, Mapping):
        return [{"role": "user", "content": [message]}] if isinstance(message, str) and message else []
    files = message.get("files")
    files = files[:64] if isinstance(files, list) else []
    parts: list[Any] = [{"path": f} if isinstance(f, str) else f for f in files]
    if isinstance(message.get("text"), str) and message["text"]:
        parts.append(message["text"])
    return [{"role": "user", "content": parts}] if parts else []


def note(lang: str) -> dict[str, Any]:
    """The note after a cut turn (an app note: it has a title, so it is never sent upstream)."""
    return {"role": "assistant", "content": [{"type": "text", "text": ""}],
            "metadata": {"title": f"⚠️ {text('reply_cut', lang)}", "id": CUT_ID, "status": "done"}}


def conversation(chat: Mapping[str, Any] | None, lang: str) -> list[dict[str, Any]]:
    """What the chat shows: its messages, or, while a turn is unfinished, the turn as last saved and the note."""
    if not chat:
        return []
    unfinished = chat.get("unfinished")
    if not unfinished:
        return chat["messages"]
    return [*chat["messages"][: unfinished["from"]], *unfinished["messages"], note(lang)]


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two saves of one message match (attachments by name: their seals may differ)."""
    def bare(message: Mapping[str, Any]) -> tuple[Any, ...]:
        parts = tuple(p.get("text") if p.get("type") == "text" else (p.get("file") or {}).get("orig_name")
                      for p in message.get("content") or [])
        return message.get("role"), (message.get("metadata") or {}).get("title"), parts
    return bare(a) == bare(b)


def unfinished(store: Mapping[str, Any], chat_id: str | None, shown: object, root: chats.Root,
               lang: str = "en") -> dict[str, Any]:
    """The store with chat ``chat_id``'s turn in progress: what it ``shown``, kept beside its saved messages
    (where the two part, and what follows). A chat the store does not hold is left to its first save."""
    cleaned = chats.clean_messages(shown, root, lang)
    chat = chats.find(store, chat_id)
    if chat is None or not cleaned:
        return dict(store)
    saved = chat["messages"]
    start = next((i for i, (a, b) in enumerate(zip(saved, cleaned, strict=False)) if not _same(a, b)),
                 min(len(saved), len(cleaned)))
    changed = {**chat, "unfinished": {"from": start, "messages": cleaned[start:]}}
    return {**store, "chats": [changed if c["id"] == chat["id"] else c for c in store["chats"]]}


def started(before: Mapping[str, Any], after: Mapping[str, Any], chat_id: str | None, question: Sequence[Any],
            root: chats.Root, lang: str = "en") -> dict[str, Any]:
    """``after`` (the store once chat ``chat_id`` began, see :func:`chatbot.web.chats.begin`) with the turn
    that starts unfinished: the conversation as shown (``before``'s) and the question."""
    earlier = chats.find(before, chat_id)
    shown = [*conversation(earlier, lang), *question] if earlier else (chats.find(after, chat_id) or {}).get("messages")
    return unfinished(after, chat_id, shown, root, lang)


class ReplySaver:
    """Saves a streaming reply as it stands, from the reply's own stream (:meth:`along`)."""

    def __init__(self, replying: Replying, store: Callable[..., dict[str, Any]], latest: LatestStores,
                 root: Callable[..., chats.Root]) -> None:
        self.replying = replying  # which tabs have a reply in progress
        self.store = store  # (what the browser sent, request) -> the tab's store, cleaned and fresh
        self.latest = latest  # the store each tab was last sent
        self.root = root  # (request, saving=True) -> where the session's attachments may be
        self.every = SAVE_EVERY

    def save(self, raw: object, shown: object, chat_id: str | None, request: gr.Request, clean: bool = False) -> Any:
        """The store with the chat's turn as ``shown``, while its tab's reply is in progress; else gr.skip()
        (a save that comes after the reply's own would undo it: the tab's turn orders them). ``clean``: ``raw``
        is a store this saver made (not rebuilt again)."""
        session = getattr(request, "session_hash", None)
        with self.replying.turn(session):
            if not self.replying.busy(session) or not chats.valid_id(chat_id):
                return gr.skip()
            store = self.latest.fresh(session, raw) if clean and isinstance(raw, dict) else self.store(raw, request)
            if chats.find(store, chat_id) is None:
                return gr.skip()
            root = self.root(request, saving=True)
            return self.latest.sent(session, unfinished(store, chat_id, shown, root, language_of(request)))

    async def along(self, updates: AsyncIterator[tuple], raw: object, chat_id: str | None,
                    request: gr.Request) -> AsyncIterator[tuple[tuple, Any]]:
        """(update, store) for each of a streaming reply's ``updates`` (ChatInterface's: the chat second):
        the store the browser sent (``raw``), then the one with the turn as shown, saved every
        :attr:`every` seconds when what is shown changed; the reply's last update (it ends its turn:
        ``finished`` is set) saves nothing."""
        store, last, saved_shown = raw, time.monotonic(), None
        async with contextlib.aclosing(updates):  # type: ignore[type-var]
            async for update in updates:
                if (time.monotonic() - last >= self.every and not ends_turn(update)
                        and update[1] != saved_shown):
                    last = time.monotonic()
                    saved = await asyncio.to_thread(self.save, store, update[1], chat_id, request, store is not raw)
                    store, saved_shown = (store, saved_shown) if saved == gr.skip() else (saved, update[1])
                yield update, store


def ends_turn(update: tuple) -> bool:
    """Whether a reply's update is its last (``finished`` is set: the panel's save follows it)."""
    return any(isinstance(value, dict) and "at" in value and "messages" in value for value in update[2:])
