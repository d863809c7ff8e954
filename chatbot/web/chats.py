"""Saved chats: a visitor's conversations, kept in their own browser, that survive a reload and a restart.

Gradio's ``save_history`` encrypts the browser copy with a key it draws again at every server start, so
the chats vanish on restart. Here the store lives in a ``gr.BrowserState`` with a fixed storage key and an
encryption secret derived (HMAC) from ``CHATBOT_BROWSER_SECRET``, or from a random secret generated once
and kept in ``data/browser-secret``; the setting itself never reaches the page.

The store is a plain JSON value::

    {"version": 1, "current": "<id or null>", "chats": [{"id", "title", "created", "updated", "model",
     "settings"?: {"system"?, "temperature"?, "max_tokens"?}, "messages": [{"role", "content": [parts],
     "metadata"?}], "unfinished"?: {"from", "messages"}}]}

``unfinished`` is a turn in progress (see :mod:`chatbot.web.cut_reply`): the conversation shown is
``messages[:from] + unfinished.messages``; any save of the chat's messages ends it.

Everything coming back from the browser (the store, an imported file) is untrusted: :func:`normalize_store`
and :func:`clean_messages` rebuild it with bounded sizes, and keep a file attachment only when its path is
inside Gradio's upload folder and still exists and, in the app, carries the seal the app gave it when it
saved the chat (chatbot.web.uploads): no imported or forged path can make the server read a file.

Export and import of one conversation (Markdown, JSON) are in :mod:`chatbot.web.chat_files`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from chatbot.core.compared_turns import answered_note
from chatbot.core.i18n import text
from chatbot.core.params import Params
from chatbot.core.settings import Settings
from chatbot.web.chat_list import plain_title

log = logging.getLogger("switchboard.chats")

STORAGE_KEY = "switchboard-chats-v1"
VERSION = 1
MAX_CHATS = 100
MAX_MESSAGES = 2_000
MAX_TEXT = 200_000
#: Most characters of JSON the whole store may take (a browser keeps about 5 MB per site, and the
#: encrypted copy is a third larger); the oldest chats go first.
MAX_STORE_CHARS = 2_500_000
MAX_TITLE = 80
SECRET_FILE = Path("data") / "browser-secret"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_META_KEYS: dict[str, type | tuple[type, ...]] = {
    "title": str, "status": str, "id": str, "log": str, "duration": (int, float),
}


# --- the browser secret -----------------------------------------------------------------------------

BROWSER_STATE = b"switchboard browser state v1"
#: What the key that seals saved chats' attachments (chatbot.web.uploads) is derived for: never sent to a page.
ATTACHMENT_SEAL = b"switchboard attachment seal v1"


def _derive(secret: str, purpose: bytes = BROWSER_STATE) -> str:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).hexdigest()[:32]


def browser_secret(settings: Settings, secret_file: str | os.PathLike[str] = SECRET_FILE,
                   purpose: bytes = BROWSER_STATE) -> str:
    """The key the saved chats are encrypted with in the browser: the same at every start. Derived from
    ``CHATBOT_BROWSER_SECRET``; without it, from a random secret generated once into ``secret_file``
    (mode 0600); when that cannot be written, a new one per start (the chats then last until a restart).
    Another ``purpose`` derives another key from the same secret (:data:`ATTACHMENT_SEAL`)."""
    if settings.browser_secret:
        return _derive(settings.browser_secret.get_secret_value(), purpose)
    path = Path(secret_file)
    try:
        stored = path.read_text(encoding="ascii").strip() if path.is_file() else ""
        if len(stored) < 16:
            stored = secrets.token_urlsafe(32)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(stored + "\n")
        return _derive(stored, purpose)
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot keep the saved-chats secret in %s (%s): saved chats will not survive a restart; "
                    "set CHATBOT_BROWSER_SECRET", path, exc)
        return _derive(secrets.token_urlsafe(32), purpose)


# --- cleaning what the browser sends -----------------------------------------------------------------

#: Where attachments may be: Gradio's upload folder (a file inside it that exists is kept), or a keeper
#: (:meth:`chatbot.web.uploads.SessionFiles.keeper`): given (path, seal) the seal to keep the file with, or None.
Root = str | os.PathLike[str] | Callable[[str, object], str | None] | None


def _inside(path: str, root: str | os.PathLike[str] | None) -> bool:
    if root is None:
        return False
    try:
        resolved = Path(path).resolve()
        resolved.relative_to(Path(root).resolve())
    except (ValueError, OSError):
        return False
    return resolved.is_file()


def clip(value: str, limit: int) -> str:
    """``value`` without NUL characters, cut to ``limit`` characters (an ellipsis marks the cut)."""
    value = value.replace("\x00", "")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _file_part(part: Mapping[str, Any], root: Root, lang: str) -> dict[str, Any]:
    nested = part.get("file")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else part
    path = inner.get("path") if isinstance(inner.get("path"), str) else None
    name = inner.get("orig_name") or inner.get("name") or (os.path.basename(path) if path else "")
    name = clip(" ".join(str(name).split()), 120) or "file"
    seal = root(path, inner.get("seal")) if path and callable(root) else None
    if path and (seal is not None if callable(root) else _inside(path, root)):
        file: dict[str, Any] = {"path": path, "orig_name": name}
        if seal is not None:
            file["seal"] = seal
        if isinstance(inner.get("mime_type"), str):
            file["mime_type"] = inner["mime_type"][:100]
        return {"type": "file", "file": file}
    return {"type": "text", "text": text("attachment_missing", lang, name=name)}


def clean_parts(content: object, root: Root, lang: str = "en") -> list[dict[str, Any]]:
    """Message content in any shape Gradio or a file gives it, as a list of text and file parts."""
    items = content if isinstance(content, list | tuple) else [content]
    parts: list[dict[str, Any]] = []
    for item in items[:64]:
        if isinstance(item, str):
            if item:
                parts.append({"type": "text", "text": clip(item, MAX_TEXT)})
        elif isinstance(item, Mapping):
            kind = item.get("type")
            if kind == "text" or (kind is None and isinstance(item.get("text"), str)):
                value = item.get("text")
                if isinstance(value, str) and value:
                    parts.append({"type": "text", "text": clip(value, MAX_TEXT)})
            elif kind == "file" or (kind is None and ("path" in item or "file" in item or "name" in item)):
                parts.append(_file_part(item, root, lang))
    return parts


def clean_messages(messages: object, root: Root, lang: str = "en") -> list[dict[str, Any]]:
    """Chat messages rebuilt from untrusted input: user and assistant only, bounded, with safe metadata
    (a block left "pending" by a Stop is shown as done)."""
    if not isinstance(messages, list | tuple):
        return []
    out: list[dict[str, Any]] = []
    for item in list(messages)[-MAX_MESSAGES:]:
        if not isinstance(item, Mapping) or item.get("role") not in ("user", "assistant"):
            continue
        parts = clean_parts(item.get("content"), root, lang)
        message: dict[str, Any] = {"role": item["role"], "content": parts}
        metadata = item.get("metadata")
        if isinstance(metadata, Mapping):
            kept = {
                key: (clip(value, 300) if isinstance(value, str) else value)
                for key, kind in _META_KEYS.items()
                if isinstance(value := metadata.get(key), kind) and not isinstance(value, bool)
            }
            if kept.get("status") not in (None, "done"):
                kept["status"] = "done"
            if kept.get("title"):
                message["metadata"] = kept
        if parts or message.get("metadata"):  # a note may say it all in its title (Stopped, a failure)
            message["content"] = parts or [{"type": "text", "text": ""}]
            out.append(message)
    return out


def title_of(messages: Iterable[Mapping[str, Any]], lang: str = "en") -> str:
    """A chat's title: the start of its first user message's first line, in plain text (no Markdown)."""
    for message in messages:
        if message.get("role") == "user" and not message.get("metadata"):
            words = plain_title("\n".join(p["text"] for p in message.get("content", []) if p.get("type") == "text"))
            if words:
                return clip(words, MAX_TITLE)
    return text("untitled", lang)


def current_time() -> float:
    """Now, as the chats' times are kept (seconds, to the millisecond)."""
    return round(time.time(), 3)


def _chat(raw: object, root: Root) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not _ID_RE.match(raw["id"]):
        return None
    messages = clean_messages(raw.get("messages"), root)
    created = _number(raw.get("created"), current_time())
    updated = _number(raw.get("updated"), created)
    given = raw.get("title")
    title = given if isinstance(given, str) and given.strip() else title_of(messages)
    model = raw.get("model") if isinstance(raw.get("model"), str) else None
    chat = {
        "id": raw["id"], "title": clip(" ".join(title.split()), MAX_TITLE), "created": float(created),
        "updated": float(updated), "model": clip(model, 200) if model else None, "messages": messages,
    }
    unfinished = raw.get("unfinished")
    if isinstance(unfinished, Mapping) and isinstance(start := unfinished.get("from"), int) \
            and not isinstance(start, bool) and 0 <= start <= len(messages):  # a turn in progress
        chat["unfinished"] = {"from": start, "messages": clean_messages(unfinished.get("messages"), root)}
    return with_settings(chat, raw.get("settings"))


def with_settings(chat: dict[str, Any], raw: object) -> dict[str, Any]:
    """``chat`` with its own settings (cleaned, see :class:`chatbot.core.params.Params`), if it has any."""
    chat.pop("settings", None)
    settings = Params.of(raw).as_dict()
    return {**chat, "settings": settings} if settings else chat


def answered(messages: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a conversation holds an answer (an assistant message that is not an app note, or a compared
    turn's column with text): a chat made only of failed attempts is not kept by itself."""
    return any(m.get("role") == "assistant" and (not m.get("metadata") or answered_note(m)) for m in messages)


def empty_store() -> dict[str, Any]:
    return {"version": VERSION, "current": None, "chats": []}


def _fit(chats: list[dict[str, Any]], current: str | None) -> list[dict[str, Any]]:
    """The newest chats within :data:`MAX_CHATS` and :data:`MAX_STORE_CHARS` (the current one stays)."""
    chats = sorted(chats, key=lambda c: c["updated"], reverse=True)
    kept: list[dict[str, Any]] = []
    size = 0
    for chat in chats:
        weight = len(json.dumps(chat, ensure_ascii=False))
        if chat["id"] != current and (len(kept) >= MAX_CHATS or size + weight > MAX_STORE_CHARS):
            continue
        kept.append(chat)
        size += weight
    return kept


def normalize_store(raw: object, root: Root) -> dict[str, Any]:
    """The store from the browser, rebuilt (anything malformed becomes an empty store)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("chats"), list):
        return empty_store()
    chats: dict[str, dict[str, Any]] = {}
    for item in raw["chats"][: MAX_CHATS * 2]:
        chat = _chat(item, root)
        if chat is not None:
            chats.setdefault(chat["id"], chat)
    current = raw.get("current") if raw.get("current") in chats else None
    store = {"version": VERSION, "current": current, "chats": _fit(list(chats.values()), current)}
    rev = raw.get("rev")  # which copy this is (chatbot.web.latest_stores)
    return {**store, "rev": rev} if isinstance(rev, int) and not isinstance(rev, bool) and rev > 0 else store


# --- operations ------------------------------------------------------------------------------------

def find(store: Mapping[str, Any], chat_id: str | None) -> dict[str, Any] | None:
    return next((c for c in store.get("chats", []) if c["id"] == chat_id), None) if chat_id else None


def current(store: Mapping[str, Any]) -> dict[str, Any] | None:
    return find(store, store.get("current"))


def new_id() -> str:
    """A fresh chat id (a chat on screen gets one before its first message, see :func:`begin`)."""
    return secrets.token_hex(8)


def valid_id(chat_id: object) -> str | None:
    """``chat_id`` when it is a well-formed chat id, else None."""
    return chat_id if isinstance(chat_id, str) and _ID_RE.match(chat_id) else None


def save(store: Mapping[str, Any], messages: object, model: str | None, root: Root,
         lang: str = "en", chat_id: str | None = None, settings: object = None) -> dict[str, Any]:
    """The store with chat ``chat_id``'s messages replaced (created when the store does not hold it yet).
    Without ``chat_id``: the current chat, or a new one when none is current. The current chat stays
    current (the saved one becomes current only when none was)."""
    cleaned = clean_messages(messages, root, lang)
    chats = [dict(c) for c in store.get("chats", [])]
    target = valid_id(chat_id) or store.get("current")
    chat = next((c for c in chats if c["id"] == target), None)
    current = store.get("current") if any(c["id"] == store.get("current") for c in chats) else None
    if settings is not None and chat is not None:  # the chat's settings, saved even with no message
        chat.update(with_settings(chat, settings))
    if not cleaned:
        return {"version": VERSION, "current": current, "chats": chats}
    now = max(current_time(), max((c.get("updated", 0.0) for c in chats), default=0.0) + 0.001)  # newest on top
    if chat is None:
        chat = {"id": target or new_id(), "title": title_of(cleaned, lang), "created": now}
        chats.append(chat)
    chat.update(messages=cleaned, updated=now, model=model or chat.get("model"))
    chat.pop("unfinished", None)  # the turn in progress, if any, is over (chatbot.web.cut_reply)
    if settings is not None:
        chat.update(with_settings(chat, settings))
    current = current or chat["id"]
    return {"version": VERSION, "current": current, "chats": _fit(chats, current)}


def begin(store: Mapping[str, Any], chat_id: str | None, messages: object, model: str | None,
          root: Root, lang: str = "en", settings: object = None) -> dict[str, Any]:
    """A chat starts: the store with chat ``chat_id`` listed and current, holding ``messages`` (its first
    question); a chat the store already holds is only made current (its reply saves it whole)."""
    chat_id = valid_id(chat_id)
    if chat_id is None:
        return dict(store)
    if find(store, chat_id) is None:
        store = save({**store, "current": None}, messages, model, root, lang, chat_id=chat_id, settings=settings)
    return select(store, chat_id)


def select(store: Mapping[str, Any], chat_id: str | None) -> dict[str, Any]:
    """The store with ``chat_id`` current (None, or an id it does not hold: a new chat)."""
    chosen = find(store, chat_id)
    return {**store, "current": chosen["id"] if chosen else None}


def rename(store: Mapping[str, Any], chat_id: str | None, title: str) -> dict[str, Any]:
    title = clip(" ".join(str(title or "").split()), MAX_TITLE)
    if not title:
        return dict(store)
    return {**store, "chats": [{**c, "title": title} if c["id"] == chat_id else c for c in store.get("chats", [])]}


def delete(store: Mapping[str, Any], chat_id: str | None) -> dict[str, Any]:
    chats = [c for c in store.get("chats", []) if c["id"] != chat_id]
    current_id = store.get("current") if store.get("current") != chat_id else None
    return {"version": VERSION, "current": current_id, "chats": chats}


def choices(store: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(title, id) pairs, newest first, for the list of saved chats."""
    chats = sorted(store.get("chats", []), key=lambda c: c["updated"], reverse=True)
    return [(c["title"], c["id"]) for c in chats]


def add(store: Mapping[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """The store with ``chat`` added and current."""
    chats = [*store.get("chats", []), chat]
    return {"version": VERSION, "current": chat["id"], "chats": _fit(chats, chat["id"])}
