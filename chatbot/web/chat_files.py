"""One saved chat as a file: exported as Markdown (for people) or JSON (for :func:`import_json`), and a JSON
export imported back as a new chat.

An imported file is untrusted like everything from the browser: it is rebuilt by
:func:`chatbot.web.chats.clean_messages` with no upload folder, so attachments come back as their names only
and no path in a file can make the server read one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chatbot.core.compared_turns import compared_model
from chatbot.core.i18n import text
from chatbot.web import chats
from chatbot.web.chats import MAX_TITLE, VERSION, clean_messages, clip, current_time, new_id, title_of

EXPORT_FORMAT = "switchboard.conversation"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _portable(message: Mapping[str, Any]) -> dict[str, Any]:
    parts = []
    for part in message["content"]:
        if part["type"] == "file":
            parts.append({"type": "file", "name": part["file"].get("orig_name") or "file"})
        else:
            parts.append({"type": "text", "text": part["text"]})
    content: str | list = parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts
    out: dict[str, Any] = {"role": message["role"], "content": content}
    if message.get("metadata"):
        out["metadata"] = dict(message["metadata"])
    return out


def export_json(chat: Mapping[str, Any]) -> str:
    """One conversation as JSON (attachments by name only: the files stay on the server)."""
    payload = {
        "format": EXPORT_FORMAT,
        "version": VERSION,
        "title": chat["title"],
        "model": chat.get("model"),
        "created": _iso(chat["created"]),
        "updated": _iso(chat["updated"]),
        "messages": [_portable(m) for m in chat["messages"]],
    }
    if chat.get("settings"):  # the chat's own settings travel with it
        payload["settings"] = dict(chat["settings"])
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"


def import_json(data: str | bytes, lang: str = "en") -> dict[str, Any]:
    """A conversation from :func:`export_json`'s output, as a new chat (fresh id). Raises ValueError
    (whose text is fit to show, in ``lang``) for anything else. Attachments come back as their names."""
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(text("import_failed", lang)) from None
    if not isinstance(payload, Mapping) or payload.get("format") != EXPORT_FORMAT or not isinstance(
        payload.get("messages"), list
    ):
        raise ValueError(text("import_failed", lang))
    messages = clean_messages(payload["messages"], None, lang)
    if not messages:
        raise ValueError(text("import_failed", lang))
    created = _epoch(payload.get("created")) or current_time()
    title = payload.get("title") if isinstance(payload.get("title"), str) and payload["title"].strip() else None
    model = payload.get("model") if isinstance(payload.get("model"), str) else None
    chat = {
        "id": new_id(),
        "title": clip(" ".join((title or title_of(messages, lang)).split()), MAX_TITLE),
        "created": created,
        "updated": _epoch(payload.get("updated")) or created,
        "model": clip(model, 200) if model else None,
        "messages": messages,
    }
    return chats.with_settings(chat, payload.get("settings"))


def export_markdown(chat: Mapping[str, Any], lang: str = "en") -> str:
    """One conversation as Markdown: thinking in a ``<details>`` block, a compared turn's columns as sections
    (``### 🔀 model (compared)``), app notes as quotes."""
    lines = [f"# {chat['title']}", ""]
    about = [text("exported_by", lang), _iso(chat["updated"])]
    if chat.get("model"):
        about.insert(1, f"`{chat['model']}`")
    lines += [f"*{' · '.join(about)}*", ""]
    for message in chat["messages"]:
        body = "\n\n".join(
            p["text"] if p["type"] == "text" else f"📎 {p['file'].get('orig_name') or 'file'}"
            for p in message["content"]
        )
        metadata = message.get("metadata") or {}
        if compared_model(message):  # a compared turn's column: a section of its own
            lines += [f"### {metadata.get('title') or compared_model(message)}", "", body, ""]
        elif metadata.get("title") and metadata.get("id") == "thinking":
            lines += ["<details>", f"<summary>{metadata['title']}</summary>", "", body, "", "</details>", ""]
        elif metadata.get("title"):
            quoted = "\n".join(f"> {line}" if line else ">" for line in body.splitlines())
            lines += [f"> **{metadata['title']}**", ">", quoted, ""]
        else:
            who = text("you" if message["role"] == "user" else "assistant", lang)
            lines += [f"**{who}:**", "", body, ""]
    return "\n".join(lines).rstrip() + "\n"


def _slug(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:40]
    return slug or "chat"


def write_export(chat: Mapping[str, Any], kind: str, directory: str | os.PathLike[str], lang: str = "en") -> str:
    """Write ``chat`` as ``kind`` ("md" or "json") under ``directory``; the file's path (named after the
    title, in a folder named after the content, so a download is never confused with another)."""
    body = export_markdown(chat, lang) if kind == "md" else export_json(chat)
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    folder = Path(directory) / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(chat['title'])}.{kind}"
    if not path.exists():
        path.write_text(body, encoding="utf-8")
    return str(path)


def prune(directory: Path, keep: int) -> None:
    """Remove the oldest export folders beyond ``keep``."""
    folders = sorted((p for p in directory.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for folder in folders[: max(0, len(folders) - keep)]:
        shutil.rmtree(folder, ignore_errors=True)


#: How many exports are written between two prunes of the export folder (a prune reads every folder's time:
#: on each of a message's two saves it was a tenth of the app's CPU with 100 visitors, py-spy).
PRUNE_EVERY = 50


class Exports:
    """The export folder: :func:`write_export` into ``directory``, pruned to the newest ``keep`` folders once
    every ``every`` writes (so it holds at most ``keep + every`` folders per process)."""

    def __init__(self, directory: Path, keep: int, every: int = PRUNE_EVERY) -> None:
        self.directory, self.keep, self.every = directory, keep, every
        self._writes = 0
        self._lock = threading.Lock()

    def write(self, chat: Mapping[str, Any], kind: str, lang: str = "en") -> str:
        path = write_export(chat, kind, self.directory, lang)
        with self._lock:
            self._writes += 1
            due = self._writes >= self.every
            if due:
                self._writes = 0
        if due:
            prune(self.directory, self.keep)
        return path
