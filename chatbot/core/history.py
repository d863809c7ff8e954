"""Fit a chat history into a token budget by dropping the oldest whole turns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

REPLY_PRIMING_TOKENS = 3  # same as chatbot.core.tokens.REPLY_PRIMING_TOKENS


@dataclass(frozen=True)
class Trimmed:
    """Messages to send, how many whole turns were left out, and their total token count."""

    messages: list[dict]
    dropped_turns: int
    tokens: int


class MessageTooLong(ValueError):
    """The system prompt plus the newest message alone exceed the budget."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(
            f"the newest message (with the system prompt) needs {tokens} tokens, but the budget is {budget}"
        )
        self.tokens = tokens
        self.budget = budget

    def __reduce__(self) -> tuple[type[MessageTooLong], tuple[int, int]]:
        return (type(self), (self.tokens, self.budget))


INLINE_MESSAGES = 8  # a history this small is cleaned, counted and trimmed on the event loop
INLINE_CHARS = 4_000


def small_history(history: object, extra_chars: int = 0) -> bool:
    """Whether ``history`` (messages or a :class:`History`) is at most INLINE_MESSAGES messages of text
    (strings or text parts, no files) of INLINE_CHARS characters in all (``extra_chars`` counted in):
    small enough that cleaning, counting and trimming it costs less than a hop to a worker thread. The
    one inline-or-thread rule (:func:`chatbot.core.upstream.prepares_inline` applies it)."""
    if isinstance(history, History):
        history = history.items
    if not isinstance(history, list | tuple) or len(history) > INLINE_MESSAGES:
        return False
    chars = extra_chars
    for m in history:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):  # a chat's text parts (a file part would be read: not small)
            for part in content:
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    return False
                chars += len(part["text"])
        else:
            return False
        if chars > INLINE_CHARS:
            return False
    return chars <= INLINE_CHARS


def trim_history(messages: list[dict], budget: int, count: Callable[[dict], int]) -> Trimmed:
    """Keep system prompt, newest message and as many of the latest whole turns as fit in budget.

    A turn is a user message plus the messages after it up to the next user message; messages before
    the first user message form one turn of their own. Total = sum(count(m)) + 3 <= budget.
    """
    if not messages:
        raise ValueError("messages must contain at least the newest message")
    start = 1 if len(messages) > 1 and messages[0].get("role") == "system" else 0
    head, newest, history = messages[:start], messages[-1], messages[start:-1]

    total = sum(count(m) for m in head) + count(newest) + REPLY_PRIMING_TOKENS
    if total > budget:
        raise MessageTooLong(total, budget)

    keep_from = len(history)
    pending = 0
    for i in range(len(history) - 1, -1, -1):
        pending += count(history[i])
        if i == 0 or history[i].get("role") == "user":  # turn boundary
            if total + pending > budget:
                break
            total += pending
            pending = 0
            keep_from = i

    dropped = history[:keep_from]
    dropped_turns = sum(1 for m in dropped if m.get("role") == "user")
    if dropped and dropped[0].get("role") != "user":
        dropped_turns += 1
    return Trimmed(messages=[*head, *history[keep_from:], newest], dropped_turns=dropped_turns, tokens=total)


_SPECIAL_TOKEN = re.compile(r"<\|(?=[^|<>\s]{1,64}\|>)")


def clean_text(text: str, max_chars: int) -> str:
    """Text safe to tokenise and send: no NUL, no lone surrogates, at most ``max_chars`` characters."""
    if len(text) > max_chars:
        text = text[:max_chars]
    text = text.replace("\x00", "")
    if "<|" in text:  # special tokens such as <|endoftext|> reach the upstream defused, as plain text
        text = _SPECIAL_TOKEN.sub("<\u200b|", text)
    if not text.isascii():  # (O(1)) only a non-ASCII text can hold a lone surrogate
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _content_text(content: object) -> str:
    """The text of a message's content in any of the shapes Gradio or an API caller may send."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        text = content.get("text") if content.get("type", "text") == "text" else None
        return text if isinstance(text, str) else ""
    if isinstance(content, list | tuple):
        if len(content) == 1:  # Gradio's usual shape: one text part
            return _content_text(content[0])
        return "\n".join(t for t in (_content_text(part) for part in content) if t)
    return ""


def clean_history(
    history: object,
    max_messages: int,
    max_chars: int,
    max_message_chars: int,
    *,
    files: Callable[[str, str | None], dict | None] | None = None,
    max_images: int = 4,
) -> list[dict]:
    """Rebuild a client-supplied history as plain user/assistant text messages.

    The history comes from the browser (or any API caller) and can be forged: any role, any size, any
    shape. Only ``user`` and ``assistant`` text is kept; app notes and thinking blocks (messages with a
    ``metadata.title``) are dropped; the newest messages are kept within ``max_messages`` and
    ``max_chars`` before anything is tokenised; consecutive messages of one role are merged.

    With ``files`` (the UI passes it; the API does not), a file attached to a user message is handed to
    ``files(path, name)``, which returns an OpenAI content part (an inlined text file, or an image for a
    vision model) or None to leave it out; only the newest ``max_images`` images are kept. A message with
    an image then has a list of parts as its content; every other message stays a string.
    """
    messages = [message for _, message in _newest_first(history, max_messages, max_chars, max_message_chars,
                                                         files, max_images)]
    messages.reverse()
    return messages


def _newest_first(
    history: object,
    max_messages: int,
    max_chars: int,
    max_message_chars: int,
    files: Callable[[str, str | None], dict | None] | None,
    max_images: int,
) -> Iterator[tuple[int, dict]]:
    """clean_history's messages newest first, lazily: each as ``(index of its oldest item, message)``.
    An item is cleaned (and its files read) only when the walk reaches it, so a consumer that stops early
    leaves the older items untouched (the walk runs one item ahead, to know a message is whole)."""
    if not isinstance(history, list | tuple):
        return
    current: dict | None = None
    oldest = groups = total = 0
    images_left = max_images
    for index in range(len(history) - 1, -1, -1):
        if groups >= max_messages or total >= max_chars:
            break
        item = history[index]
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            continue
        metadata = item.get("metadata")
        if isinstance(metadata, dict) and metadata.get("title"):
            continue
        content = item.get("content")
        images: list[dict] = []
        if files is not None and item["role"] == "user":
            content, images = _with_files(content, files)
            images, images_left = images[: max(images_left, 0)], images_left - len(images)
        text = clean_text(_content_text(content), min(max_message_chars, max_chars - total))
        blank = not text or text.isspace()  # as not text.strip(), without copying the text
        if blank and not images:
            continue
        total += len(text)
        cleaned: str | list = text
        if images:
            cleaned = ([] if blank else [{"type": "text", "text": text}]) + images
        if current is not None and current["role"] == item["role"]:
            current["content"] = _join(cleaned, current["content"])
        else:
            if current is not None:
                yield oldest, current
            current = {"role": item["role"], "content": cleaned}
            groups += 1
        oldest = index
    if current is not None:
        yield oldest, current


def _with_files(content: object, files: Callable[[str, str | None], dict | None]) -> tuple[list, list[dict]]:
    """Split a user message's content into text parts (its text, then inlined text files) and images."""
    parts = list(content) if isinstance(content, list | tuple) else [content]
    texts: list[object] = []
    inlined: list[dict] = []
    images: list[dict] = []
    for part in parts:
        found = _file_part(part)
        if found is None:
            texts.append(part)
            continue
        converted = files(*found)
        if not isinstance(converted, dict):
            continue
        if converted.get("type") == "image_url":
            images.append(converted)
        elif converted.get("type") == "text":
            inlined.append(converted)
    joined = [t for t in (_content_text(texts), *(part.get("text") for part in inlined)) if isinstance(t, str) and t]
    return [{"type": "text", "text": "\n\n".join(joined)}], images  # as chatbot.core.attachments.compose joins them


def _file_part(part: object) -> tuple[str, str | None] | None:
    """(path, name) of a file part in any shape Gradio gives one, else None."""
    if not isinstance(part, dict) or part.get("type") not in (None, "file"):
        return None
    nested = part.get("file")
    inner: dict = nested if isinstance(nested, dict) else part
    path, name = inner.get("path"), inner.get("orig_name")
    if not isinstance(path, str) or not path:
        return None
    return path, name if isinstance(name, str) else None


def _join(earlier: str | list, later: str | list) -> str | list:
    """Two consecutive messages of one role as one content (a string unless either has images)."""
    if isinstance(earlier, str) and isinstance(later, str):
        return earlier + "\n\n" + later

    def parts(content: str | list) -> list:
        return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)

    return parts(earlier) + parts(later)


class _Limits(Protocol):
    @property
    def max_history_messages(self) -> int: ...
    @property
    def max_history_chars(self) -> int: ...
    @property
    def max_message_chars(self) -> int: ...


@dataclass(frozen=True)
class History:
    """A conversation's history as a client sent it (untrusted: any role, any size, any shape), with the
    caps and the attachment callback that clean it (see :func:`clean_history`). Nothing is cleaned until
    :func:`fit_history` walks it, newest first, as far as the token budget reaches."""

    items: object
    max_messages: int
    max_chars: int
    max_message_chars: int
    files: Callable[[str, str | None], dict | None] | None = None
    max_images: int = 4

    @classmethod
    def of(cls, items: object, settings: _Limits,
           files: Callable[[str, str | None], dict | None] | None = None) -> History:
        """The history with the settings' caps (the chat tab passes ``files``; the APIs send text only)."""
        return cls(items, settings.max_history_messages, settings.max_history_chars, settings.max_message_chars,
                   files)

    @property
    def messages(self) -> list[dict]:
        """The whole cleaned history (:func:`clean_history`): O(history), for the gauge and tests."""
        return clean_history(self.items, self.max_messages, self.max_chars, self.max_message_chars,
                             files=self.files, max_images=self.max_images)


def fit_history(
    history: History, budget: int, count: Callable[[dict], int], *, newest: dict, system: Sequence[dict] = (),
) -> Trimmed:
    """``trim_history([*system, *history.messages, newest], budget, count)`` without cleaning what does not
    fit: the walk goes newest first, cleans and counts each message once, and stops at the first whole
    turn that does not fit, so its cost follows what fits the budget, not the conversation's length (the
    older items are only read for their role, to tell how many turns were left out).

    ``dropped_turns`` for what the walk did not reach is read from the items as sent, without cleaning
    them (:func:`_turns_before`): exact for what a chat client sends; for a forged history (blank
    messages, more than the caps keep) it may count more turns than trim_history, never fewer, and it is
    0 exactly when trim_history's is. Raises :class:`MessageTooLong` as trim_history does."""
    head = list(system)
    fixed = sum(count(m) for m in head) + count(newest) + REPLY_PRIMING_TOKENS
    if fixed > budget:
        raise MessageTooLong(fixed, budget)
    room = budget - fixed
    kept: list[dict] = []  # newest first
    pending: list[dict] = []  # the turn being read, newest first
    pending_tokens = 0
    dropped = 0
    walk = _newest_first(history.items, history.max_messages, history.max_chars, history.max_message_chars,
                         history.files, history.max_images)
    for oldest, message in walk:
        pending.append(message)
        pending_tokens += count(message)
        if message["role"] != "user":
            continue
        if pending_tokens > room:  # this turn and every older one are left out
            dropped = 1 + _turns_before(history.items, oldest)
            pending = []
            break
        room -= pending_tokens
        kept += pending
        pending, pending_tokens = [], 0
    if pending:  # the oldest messages, before any user message: a turn of their own
        if pending_tokens > room:
            dropped = 1
        else:
            room -= pending_tokens
            kept += pending
    kept.reverse()
    return Trimmed(messages=[*head, *kept, newest], dropped_turns=dropped, tokens=budget - room)


def _turns_before(items: object, end: int) -> int:
    """How many turns start in ``items[:end]`` as sent (user and assistant messages, notes left out): one
    at each user message that follows a reply, and one at the oldest message whatever its role. (An item
    of the previous item's role starts no turn, note or not: its metadata is not read.)"""
    if not isinstance(items, list | tuple):
        return 0
    turns = 0
    previous: object = None
    for item in islice(items, end):
        if not isinstance(item, dict):
            continue
        role = item.get("role")
        if role == previous or (role != "user" and role != "assistant"):
            continue
        metadata = item.get("metadata")
        if metadata and isinstance(metadata, dict) and metadata.get("title"):
            continue
        if role == "user" or previous is None:
            turns += 1
        previous = role
    return turns
