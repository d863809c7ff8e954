"""The list of saved chats as a visitor reads it: plain-text titles, a search by title, and the chats grouped
by age (today, the previous 7 days, older).

A title is the first line of the first question with its Markdown taken out (headings, emphasis, code,
links, quotes, list marks, HTML tags), whitespace collapsed. The groups go by the time since a chat was
last updated (the server does not know the visitor's time zone): less than a day is "Today", less than a
week "Previous 7 days", the rest "Older". The group names are Gradio labels the browser translates.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

#: The groups, newest first: (key, label key, most seconds since the last update).
GROUPS: tuple[tuple[str, str, float], ...] = (
    ("today", "chats_today", 86_400.0),
    ("week", "chats_week", 7 * 86_400.0),
    ("older", "chats_older", float("inf")),
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINE_MARKS = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+(?:\[[ xX]\]\s+)?|\d{1,9}[.)]\s+)+")
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_EMPHASIS = re.compile(r"(\*{1,3}|~~|`+)(?=\S)(.+?)(?<=\S)\1|(?<!\w)(_{1,3})(?=\S)(.+?)(?<=\S)\3(?!\w)")
_LEFT_MARKS = re.compile(r"[`*]+|(?<!\w)_+|_+(?!\w)")


def plain_title(text: str) -> str:
    """The first line of ``text`` that says something, without Markdown ("" when none does)."""
    for line in text.splitlines():
        if _FENCE.match(line):
            continue
        line = _LINE_MARKS.sub("", line)
        line = _IMAGE_OR_LINK.sub(r"\1", line)
        line = _TAG.sub("", line)
        for _ in range(3):  # nested emphasis: ***a*** or **_a_**
            line = _EMPHASIS.sub(lambda m: m.group(2) or m.group(4) or "", line)
        line = " ".join(_LEFT_MARKS.sub("", line).split())
        if line:
            return line
    return ""


def matches(chat: Mapping[str, Any], query: str) -> bool:
    """Whether a chat's title holds every word of ``query`` (case and accents as typed, case ignored)."""
    title = str(chat.get("title", "")).casefold()
    return all(word in title for word in query.casefold().split())


def grouped(store: Mapping[str, Any], query: str = "", now: float | None = None) -> dict[str, list[tuple[str, str]]]:
    """(title, id) pairs per group key of :data:`GROUPS`, newest first, only the chats ``query`` matches."""
    now = time.time() if now is None else now
    out: dict[str, list[tuple[str, str]]] = {key: [] for key, _, _ in GROUPS}
    chats = sorted(store.get("chats", []), key=lambda c: c["updated"], reverse=True)
    for chat in chats:
        if query.strip() and not matches(chat, query):
            continue
        age = now - float(chat["updated"])
        key = next(k for k, _, most in GROUPS if age < most)
        out[key].append((chat["title"], chat["id"]))
    return out

