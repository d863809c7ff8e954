"""Fit a chat history into a token budget by dropping the oldest whole turns."""

from __future__ import annotations

import asyncio
import re
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

REPLY_PRIMING_TOKENS = 3  # same as chatbot.tokens.REPLY_PRIMING_TOKENS


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


async def sync_window(window: HistoryWindow, history: object, extra_chars: int = 0) -> HistorySnapshot:
    """``window.sync(history)`` (text only) on the event loop when the history is small (cheaper than the
    hop), else in a worker thread."""
    if small_history(history, extra_chars):
        return window.sync(history)
    return await asyncio.to_thread(window.sync, history)


def small_history(history: object, extra_chars: int = 0) -> bool:
    """Whether ``history`` (messages, a :class:`HistorySnapshot` or a :class:`HistoryWindow`) is at most
    INLINE_MESSAGES messages of text (strings or text parts, no files) of INLINE_CHARS characters in all
    (``extra_chars`` counted in): small enough that cleaning, syncing, counting and trimming it costs less
    than a hop to a worker thread."""
    if isinstance(history, HistoryWindow):
        history = history.snapshot
    if isinstance(history, HistorySnapshot):
        if len(history) > INLINE_MESSAGES:
            return False
        history = history.messages
    if not isinstance(history, list) or len(history) > INLINE_MESSAGES:
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
    if not isinstance(history, list | tuple):
        return []
    kept: list[dict] = []
    total = 0
    images_left = max_images
    for item in reversed(history):
        if len(kept) >= max_messages or total >= max_chars:
            break
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
        if not text.strip() and not images:
            continue
        total += len(text)
        message: dict = {"role": item["role"], "content": text}
        if images:
            message["content"] = ([{"type": "text", "text": text}] if text.strip() else []) + images
        if kept and kept[-1]["role"] == item["role"]:
            kept[-1]["content"] = _join(message["content"], kept[-1]["content"])
        else:
            kept.append(message)
    kept.reverse()
    return kept


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
    return [{"type": "text", "text": "\n\n".join(joined)}], images  # as chatbot.attachments.compose joins them


def _file_part(part: object) -> tuple[str, str | None] | None:
    """(path, name) of a file part in any shape Gradio gives one, else None."""
    if not isinstance(part, dict) or part.get("type") not in (None, "file"):
        return None
    inner = part.get("file") if isinstance(part.get("file"), dict) else part
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


# --- incremental history ---------------------------------------------------------------------------
#
# clean_history walks the whole client history on every turn, and trim_history counts every message of
# it again. HistoryWindow keeps one conversation's cleaned messages between turns, so a turn costs what
# its new messages cost (plus a few binary searches), whatever the length of the conversation.

#: How many of the oldest messages a sync may find gone from the front of the history (a store that
#: returns only the newest N messages), when the window allows it.
MAX_FRONT_DROP = 256
#: Token-count prefixes kept per chain (one per tokenizer and margin: a model change adds one).
MAX_COUNT_KEYS = 4
#: What one kept history item costs in memory besides its text, for :attr:`HistoryWindow.weight`.
ITEM_WEIGHT = 400


class _Item:
    """One item of the client history as clean_history sees it, cleaned once at ``max_message_chars``.

    ``role`` is None for an item clean_history skips whatever the caps (not a dict, another role, a note
    with ``metadata.title``). ``src`` is the text before cleaning (cut to ``max_message_chars``) when
    cleaning changed it, else None (``text`` is it); ``need`` is its length, the character budget below
    which the item would be cut. ``images`` are the image parts still kept (the history's newest
    ``max_images``), ``nimg`` how many it had; ``files`` whether it has file parts at all."""

    __slots__ = ("role", "text", "src", "need", "blank", "images", "nimg", "files")

    def __init__(self) -> None:
        self.role: object = None
        self.text = ""
        self.src: str | None = None
        self.need = 0
        self.blank = True
        self.images: list[dict] = []
        self.nimg = 0
        self.files = False

    @property
    def present(self) -> bool:
        return self.role is not None and (not self.blank or bool(self.images))

    def content(self) -> str | list:
        return _content(self.text, self.blank, self.images)


def _content(text: str, blank: bool, images: list[dict]) -> str | list:
    """A message's content as clean_history builds it: the text, or parts when it has images."""
    if images:
        return ([] if blank else [{"type": "text", "text": text}]) + list(images)
    return text


def _fold(contents: list[str | list]) -> str | list:
    """Consecutive contents of one role (oldest first) merged as clean_history merges them: from the
    newest backwards, ``_join(older, merged)`` (a run of strings at the end is one join)."""
    j = len(contents)
    while j > 0 and isinstance(contents[j - 1], str):
        j -= 1
    merged: str | list | None = "\n\n".join(contents[j:]) if j < len(contents) else None  # type: ignore[arg-type]
    for content in reversed(contents[:j]):
        merged = content if merged is None else _join(content, merged)
    assert merged is not None
    return merged


def _ingest(item: object, files: Callable[[str, str | None], dict | None] | None, max_message_chars: int) -> _Item:
    """One history item cleaned as clean_history cleans it when no cap cuts it."""
    out = _Item()
    if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
        return out
    metadata = item.get("metadata")
    if isinstance(metadata, dict) and metadata.get("title"):
        return out
    role = item["role"]
    content = item.get("content")
    images: list[dict] = []
    if role == "user":
        parts = content if isinstance(content, list | tuple) else [content]
        out.files = any(_file_part(part) is not None for part in parts)
        if files is not None:
            content, images = _with_files(content, files)
    raw = _content_text(content)
    src = raw[:max_message_chars] if len(raw) > max_message_chars else raw
    text = clean_text(raw, max_message_chars)
    out.role = role
    out.text = text
    out.src = None if text is src or text == src else src
    out.need = len(src)
    out.blank = not text.strip()
    out.images = images
    out.nimg = len(images)
    return out


def _fingerprint(item: object) -> int:
    """A hash of one client history item (equal items, equal hashes), to recognise it next turn."""
    try:
        return hash(orjson.dumps(item))
    except TypeError:  # not JSON (lone surrogates, other types): its repr, which may not match next time
        return hash((type(item).__name__, repr(item)))


def _count_key(count: Callable[[dict], int], key: Hashable | None) -> Hashable:
    """What identifies a count function's results: a TokenCounter's ``key`` (encoding and margin), else
    the function itself."""
    if key is not None:
        return key
    found = getattr(count, "key", None)
    if found is None and getattr(count, "__name__", None) == "count":
        found = getattr(getattr(count, "__self__", None), "key", None)
    return found if found is not None else count


class _Chain:
    """The merged messages of a window (one per run of consecutive same-role items), oldest first, with
    token-count prefix sums per count function. Append-only: when the window must change a message it
    has already merged, it continues on a truncated copy, so a snapshot keeps the chain it was made of."""

    __slots__ = ("roles", "first", "last", "msgs", "users", "_tokens", "_lock")

    def __init__(self) -> None:
        self.roles: list[object] = []
        self.first = array("q")  # index of the group's oldest item in the window
        self.last = array("q")  # and of its newest
        self.msgs: list[dict] = []
        self.users = array("q")  # indices of the user groups
        self._tokens: dict[Hashable, array] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.msgs)

    def append(self, role: object, first: int, last: int, content: str | list) -> None:
        if role == "user":
            self.users.append(len(self.msgs))
        self.roles.append(role)
        self.first.append(first)
        self.last.append(last)
        self.msgs.append({"role": role, "content": content})

    def truncated(self, n: int) -> _Chain:
        """A copy holding the first ``n`` groups (and their token counts)."""
        copy = _Chain()
        copy.roles = self.roles[:n]
        copy.first = self.first[:n]
        copy.last = self.last[:n]
        copy.msgs = self.msgs[:n]
        copy.users = self.users[: bisect_left(self.users, n)]
        with self._lock:
            copy._tokens = {key: prefix[: n + 1] for key, prefix in self._tokens.items()}
        return copy

    def tokens(self, key: Hashable, count: Callable[[dict], int], n: int) -> array:
        """Prefix sums of ``count`` over the groups: ``prefix[g]`` is the tokens of groups before g
        (valid up to ``n``). Counts only the groups not counted before."""
        with self._lock:
            prefix = self._tokens.pop(key, None)
            if prefix is None:
                prefix = array("q", [0])
            self._tokens[key] = prefix  # most recently used last
            while len(self._tokens) > MAX_COUNT_KEYS:
                del self._tokens[next(iter(self._tokens))]
            msgs = self.msgs
            total = prefix[-1]
            for g in range(len(prefix) - 1, n):
                total += count(msgs[g])
                prefix.append(total)
            return prefix


class HistorySnapshot:
    """A conversation's cleaned history as of one :meth:`HistoryWindow.sync`: the same messages as
    clean_history, fitted into a budget as trim_history does, without walking them.

    Immutable: later syncs of the window do not change it. Its message dicts are shared with the window:
    read them, do not modify them."""

    __slots__ = ("_chain", "_n", "_g0", "_head")

    def __init__(self, chain: _Chain, n: int, g0: int, head: list[dict]) -> None:
        self._chain = chain
        self._n = n  # the chain's groups [g0, n) follow the head messages
        self._g0 = g0
        self._head = head  # the oldest messages, cut or merged differently by the caps, built per sync

    @property
    def messages(self) -> list[dict]:
        """The history as clean_history gives it (a new list; O(messages))."""
        return [*self._head, *self._chain.msgs[self._g0 : self._n]]

    def __len__(self) -> int:
        return len(self._head) + self._n - self._g0

    def tokens(self, count: Callable[[dict], int], *, key: Hashable | None = None) -> int:
        """``sum(count(m) for m in self.messages)``, from the prefix sums."""
        chain, n, g0 = self._chain, self._n, self._g0
        prefix = chain.tokens(_count_key(count, key), count, n)
        return sum(count(m) for m in self._head) + prefix[n] - prefix[g0]

    def trim(
        self,
        budget: int,
        count: Callable[[dict], int],
        *,
        newest: dict,
        system: Sequence[dict] = (),
        key: Hashable | None = None,
    ) -> Trimmed:
        """``trim_history([*system, *self.messages, newest], budget, count)``, in O(log n) once the
        messages have been counted (each is counted once per count function; ``key`` names the function's
        results when it is not a TokenCounter or its ``count``). ``system`` is at most one system
        message. Raises :class:`MessageTooLong` as trim_history does."""
        head = list(system)
        if len(head) > 1 or (head and head[0].get("role") != "system"):
            raise ValueError("system must be at most one system message")
        fixed = sum(count(m) for m in head) + count(newest) + REPLY_PRIMING_TOKENS
        if fixed > budget:
            raise MessageTooLong(fixed, budget)
        room = budget - fixed
        chain, n, g0, hm = self._chain, self._n, self._g0, self._head
        prefix = chain.tokens(_count_key(count, key), count, n)
        end = prefix[n]
        users = chain.users
        lo = bisect_left(users, g0)
        hi = bisect_left(users, n, lo)
        # A turn starting at user group u fits when end - prefix[u] <= room; prefix grows with u, so the
        # turns that fit are the newest ones: the oldest of them is found by bisection.
        j = bisect_left(users, end - room, lo, hi, key=prefix.__getitem__)
        keep_group: int | None = None
        keep_head: int | None = None
        kept = 0
        if j > lo or (j == hi and hi > lo):  # some chain turn did not fit: keep the newer ones
            if j < hi:
                keep_group = users[j]
        else:  # every turn in the chain fits: on to older turn starts
            if lo < hi:
                keep_group = users[lo]
            if not hm:
                if g0 < n and chain.roles[g0] != "user" and end - prefix[g0] <= room:
                    keep_group = g0  # the first message starts a turn whatever its role
            else:
                total = end - prefix[g0]
                for i in range(len(hm) - 1, -1, -1):
                    total += count(hm[i])
                    if i == 0 or hm[i].get("role") == "user":
                        if total > room:
                            break
                        keep_head, kept = i, total
        chain_first_turn = int(not hm and g0 < n and chain.roles[g0] != "user")
        if keep_head is not None:
            messages = chain.msgs[g0:n]  # one copy of the (long) kept part
            messages[:0] = [*head, *hm[keep_head:]]
            dropped = _turn_starts(hm, keep_head)
        elif keep_group is not None:
            messages = chain.msgs[keep_group:n]
            messages[:0] = head
            kept = end - prefix[keep_group]
            dropped = _turn_starts(hm, len(hm)) + bisect_left(users, keep_group, lo, hi) - lo
            if keep_group > g0:
                dropped += chain_first_turn
        else:
            messages = head
            dropped = _turn_starts(hm, len(hm)) + hi - lo + chain_first_turn
        messages.append(newest)
        return Trimmed(messages=messages, dropped_turns=dropped, tokens=fixed + kept)


def _turn_starts(messages: list[dict], end: int) -> int:
    """How many turns start in ``messages[:end]`` (the first message starts one whatever its role)."""
    if end <= 0:
        return 0
    return 1 + sum(1 for m in messages[1:end] if m.get("role") == "user")


class _Limits(Protocol):
    max_history_messages: int
    max_history_chars: int
    max_message_chars: int


class HistoryWindow:
    """One conversation's history, cleaned incrementally: :meth:`sync` with the history a client sends
    each turn gives a :class:`HistorySnapshot` equal to ``clean_history(history, max_messages, max_chars,
    max_message_chars, files=files, max_images=max_images)``, cleaning only what was appended since the
    previous sync.

    A history counts as the previous one plus appended items when it is at least as long and five of the
    previous one's items are equal to what was seen (its newest three, its first and the one midway,
    compared by hashes of each item: a constant cost, not a walk). Anything else
    (an edit, undo or retry, another chat, a forged history, another ``files_key``) is cleaned again from
    scratch, within the caps as clean_history would. With ``allow_front_drop`` the history may also have
    lost up to :data:`MAX_FRONT_DROP` items at its front (a store that returns only the newest messages).

    Caveat of that check: an item changed in place between two syncs, the length and the sampled items
    unchanged, keeps its earlier cleaned text. A client can only affect its own window this way, with
    text it sent itself.

    ``files`` is clean_history's attachment callback; it must give the same part for the same file as
    long as ``files_key`` (default: the callback itself) is unchanged. Each attachment is converted once,
    and only the parts of the newest ``max_images`` images are kept. A new ``files_key`` (a model with
    other image support) re-cleans the history if it has any file parts.

    Thread-safe; sync is blocking CPU work (and, with ``files``, file reads): call it in a worker thread.
    """

    def __init__(
        self,
        max_messages: int,
        max_chars: int,
        max_message_chars: int,
        *,
        max_images: int = 4,
        allow_front_drop: bool = False,
        slack: int = 32,
        compact_min: int = 1024,
    ) -> None:
        if max_message_chars < 1:
            raise ValueError("max_message_chars must be at least 1")
        self.max_messages = max_messages
        self.max_chars = max_chars
        self.max_message_chars = max_message_chars
        self.max_images = max_images
        self.allow_front_drop = allow_front_drop
        self.slack = max(0, slack)  # items kept below the oldest one used (an image dropping out can reach them)
        self.compact_min = max(0, compact_min)  # unused items tolerated before they are let go
        self.rebuilds = 0  # syncs that cleaned the history from scratch
        self.syncs = 0
        self._lock = threading.Lock()
        self._files_key: object = None
        self._reset()

    @classmethod
    def for_settings(cls, settings: _Limits, **options: Any) -> HistoryWindow:
        """A window with the settings' history caps (as ChatUI.history_for_upstream and the API use)."""
        return cls(settings.max_history_messages, settings.max_history_chars, settings.max_message_chars, **options)

    def _reset(self) -> None:
        self._items: list[_Item] = []
        self._fps = array("q")  # fingerprint of each item
        self._first = 0  # window index of the history's item 0 (negative: items below were never needed)
        self._chars = array("q", [0])  # prefix sums: characters each item adds when kept whole
        self._room = array("q", [0])  # prefix sums: an upper bound of what each item needs to stay whole
        self._chain = _Chain()
        self._with_images: list[int] = []  # items that still keep image parts
        self._has_files = False
        self._text_chars = 0
        self._snapshot = HistorySnapshot(self._chain, 0, 0, [])

    @property
    def snapshot(self) -> HistorySnapshot:
        """The history as of the latest sync."""
        return self._snapshot

    @property
    def weight(self) -> int:
        """Roughly what the window holds in memory, in characters (for a cache's bound)."""
        return self._text_chars + ITEM_WEIGHT * len(self._items)

    def sync(
        self,
        history: object,
        *,
        files: Callable[[str, str | None], dict | None] | None = None,
        files_key: Hashable | None = None,
    ) -> HistorySnapshot:
        """Take in the history the client sent (any shape clean_history accepts) and return its cleaned
        messages. O(new items) plus O(log n) when it extends the previous one; else a rebuild."""
        items: list | tuple = history if isinstance(history, list | tuple) else []
        key = files_key if files_key is not None else files
        with self._lock:
            self.syncs += 1
            if key is not self._files_key and key != self._files_key:
                self._files_key = key
                if self._has_files:
                    return self._rebuild(items, files)
            drop = self._align(items)
            if drop is None:
                return self._rebuild(items, files)
            self._first += drop
            new = len(items) - (len(self._items) - self._first)
            if new > max(self.compact_min, len(self._items)):
                return self._rebuild(items, files)  # mostly new: cleaned within the caps
            if new:
                self._extend(items, files)
            found = self._head()
            if found is None:  # older items than the window holds are needed
                return self._rebuild(items, files)
            snapshot, low = found
            cut = max(0, self._first, low - self.slack)
            if cut > max(self.compact_min, len(self._items) - cut):
                self._compact(cut)
                found = self._head()
                if found is None:  # pragma: no cover - the items needed were kept
                    return self._rebuild(items, files)
                snapshot = found[0]
            self._snapshot = snapshot
            return snapshot

    # -- matching the previous history

    def _align(self, items: list | tuple) -> int | None:
        """How many items the history lost at its front if it continues the previous one, else None."""
        size = len(self._items)
        length = size - self._first  # the previous history's length
        if length == 0 or not items:
            return None  # nothing to continue (a first sync is cleaned within the caps)
        most = min(MAX_FRONT_DROP if self.allow_front_drop else 0, length - 1)
        for drop in range(max(0, length - len(items)), most + 1):
            if self._continues(items, drop):
                return drop
        return None

    def _continues(self, items: list | tuple, drop: int) -> bool:
        """Whether ``items[i - shift]`` equals what the window saw at i, for the sampled i: the newest three,
        the oldest one still in the history, and the one midway (a constant number of items)."""
        fps = self._fps
        shift = self._first + drop  # window index i is items[i - shift]
        lo = max(0, shift)
        newest = len(self._items) - 1
        if newest < lo:
            return False
        for i in dict.fromkeys((newest, newest - 1, newest - 2, lo, (lo + newest) // 2)):
            if i >= lo and _fingerprint(items[i - shift]) != fps[i]:
                return False
        return True

    # -- building

    def _rebuild(self, items: list | tuple, files: Callable[[str, str | None], dict | None] | None) -> HistorySnapshot:
        """Clean the history from scratch, newest first, as far as clean_history would (plus slack)."""
        self.rebuilds += 1
        self._reset()
        cap_messages, cap_chars, cap_message = self.max_messages, self.max_chars, self.max_message_chars
        taken: list[_Item] = []
        fps: list[int] = []
        total = groups = 0
        role: object = None
        images_left = self.max_images
        stopped = False
        extra = self.slack
        for index in range(len(items) - 1, -1, -1):
            if not stopped and (groups >= cap_messages or total >= cap_chars):
                stopped = True
            if stopped:
                if extra <= 0:
                    break
                extra -= 1
            item = _ingest(items[index], files, cap_message)
            if item.nimg:
                item.images = item.images[: max(images_left, 0)]
            images_left -= item.nimg
            taken.append(item)
            fps.append(_fingerprint(items[index]))
            if stopped or item.role is None:
                continue
            limit = min(cap_message, cap_chars - total)
            text = item.text if limit >= item.need else clean_text(item.src or item.text, limit)
            if text.strip() or item.images:
                total += len(text)
                if item.role != role:
                    groups += 1
                    role = item.role
        taken.reverse()
        fps.reverse()
        self._items = taken
        self._fps = array("q", fps)
        self._first = len(taken) - len(items)
        self._with_images = [i for i, item in enumerate(taken) if item.images]
        self._has_files = any(item.files for item in taken)
        self._text_chars = sum(len(item.text) + len(item.src or "") for item in taken)
        self._refresh(0)
        found = self._head()
        assert found is not None, "a rebuild keeps every item the caps reach"
        self._snapshot = found[0]
        return self._snapshot

    def _extend(self, items: list | tuple, files: Callable[[str, str | None], dict | None] | None) -> None:
        """Clean the items appended since the previous sync (the window's items are its prefix)."""
        old = len(self._items)
        start = old - self._first
        cap_message = self.max_message_chars
        new = [_ingest(items[r], files, cap_message) for r in range(start, len(items))]
        newer = 0  # images in items newer than the one at hand
        for item in reversed(new):
            if item.nimg:
                item.images = item.images[: max(self.max_images - newer, 0)]
                newer += item.nimg
        changed = old
        if newer:  # the new images push older ones out of the newest max_images
            still: list[int] = []
            for index in reversed(self._with_images):
                item = self._items[index]
                keep = max(0, min(item.nimg, self.max_images - newer))
                newer += item.nimg
                if keep != len(item.images):
                    item.images = item.images[:keep]
                    changed = index
                if keep:
                    still.append(index)
            still.reverse()
            self._with_images = still
        self._items.extend(new)
        self._fps.extend(_fingerprint(items[r]) for r in range(start, len(items)))
        self._with_images.extend(old + i for i, item in enumerate(new) if item.images)
        self._has_files = self._has_files or any(item.files for item in new)
        self._text_chars += sum(len(item.text) + len(item.src or "") for item in new)
        self._refresh(changed)

    def _refresh(self, start: int) -> None:
        """Recompute the prefix sums and the merged messages for items ``start`` onwards (they are new or
        changed; earlier ones are as they were)."""
        items = self._items
        chars, room = self._chars, self._room
        del chars[start + 1 :]
        del room[start + 1 :]
        for index in range(start, len(items)):
            item = items[index]
            if item.present:
                size = len(item.text)
                chars.append(chars[-1] + size)
                room.append(room[-1] + max(size, item.need, 1))
            else:
                chars.append(chars[-1])
                room.append(room[-1])
        chain = self._chain
        groups = len(chain)
        cut = bisect_left(chain.first, start, 0, groups)  # groups from here start at changed items
        begin = start
        if cut > 0:
            merges = chain.last[cut - 1] >= start
            if not merges:
                following = next((items[i] for i in range(start, len(items)) if items[i].present), None)
                merges = following is not None and following.role == chain.roles[cut - 1]
            if merges:  # the newest unchanged message takes in the changed items
                cut -= 1
                begin = chain.first[cut]
        if cut < groups:
            chain = self._chain = chain.truncated(cut)
        members: list[int] = []
        for index in range(begin, len(items)):
            item = items[index]
            if not item.present:
                continue
            if members and item.role != items[members[-1]].role:
                self._group(chain, members)
                members = []
            members.append(index)
        if members:
            self._group(chain, members)

    def _group(self, chain: _Chain, members: list[int]) -> None:
        items = self._items
        if len(members) == 1:
            content = items[members[0]].content()
        else:
            content = _fold([items[i].content() for i in members])
        chain.append(items[members[0]].role, members[0], members[-1], content)

    def _compact(self, cut: int) -> None:
        """Let go of the items before ``cut``: dropped from the history or beyond the caps for good."""
        self._items = self._items[cut:]
        self._fps = self._fps[cut:]
        self._first -= cut
        self._with_images = [i - cut for i in self._with_images if i >= cut]
        self._has_files = any(item.files for item in self._items)
        self._text_chars = sum(len(item.text) + len(item.src or "") for item in self._items)
        self._chars = array("q", [0])
        self._room = array("q", [0])
        self._chain = _Chain()
        self._refresh(0)

    def _head(self) -> tuple[HistorySnapshot, int] | None:
        """The snapshot for the items as they are, and the oldest item it needed; None when it needs
        items older than the window holds.

        Every item from ``start`` on is kept whole (the caps do not reach it: bisection on the prefix
        sums), so its merged messages are the chain's; from there back, clean_history's own loop runs
        until a cap stops it, usually after one item (cut to the characters left)."""
        items, chain = self._items, self._chain
        size, groups = len(items), len(chain)
        cap_messages, cap_chars, cap_message = self.max_messages, self.max_chars, self.max_message_chars
        lo = max(0, self._first)
        if cap_messages <= 0 or cap_chars <= 0 or lo >= size:
            return HistorySnapshot(chain, groups, groups, []), size
        live = bisect_left(chain.last, lo, 0, groups)  # the first group with an item in the history
        start = lo
        if groups - live >= cap_messages:  # the newest item of the oldest group max_messages allows
            start = chain.last[groups - cap_messages]
        room = self._room
        # the newest item whose whole-keeping bound no longer fits in max_chars, counted from the newest
        start = max(start, bisect_left(room, room[size] - cap_chars, lo, size + 1))
        total = self._chars[size] - self._chars[start]
        g = bisect_left(chain.last, start, live, groups)  # the group of the oldest whole item
        count = groups - g
        role: object = None
        content: str | list | None = None
        merged = False
        if g < groups:
            role = chain.roles[g]
            if chain.first[g] < start:  # only its newest items are kept
                content = _fold([items[i].content() for i in range(start, chain.last[g] + 1) if items[i].present])
                merged = True
            else:
                content = chain.msgs[g]["content"]
        group_role = role
        older: list[dict] = []  # messages before that group, newest first
        index = start - 1
        while True:
            if count >= cap_messages or total >= cap_chars:
                break
            if index < lo:
                if self._first < 0:
                    return None
                break
            item = items[index]
            index -= 1
            if item.role is None:
                continue
            limit = min(cap_message, cap_chars - total)
            if limit >= item.need:
                text, blank = item.text, item.blank
            else:
                text = clean_text(item.src or item.text, limit)
                blank = not text.strip()
            if blank and not item.images:
                continue
            total += len(text)
            piece = _content(text, blank, item.images)
            if item.role == role:
                if older:
                    older[-1]["content"] = _join(piece, older[-1]["content"])
                else:
                    content = _join(piece, content)  # type: ignore[arg-type]
                    merged = True
            else:
                older.append({"role": item.role, "content": piece})
                count += 1
                role = item.role
        head = older[::-1]
        if merged:
            head.append({"role": group_role, "content": content})
        return HistorySnapshot(chain, groups, g + 1 if merged else g, head), index + 1


class WindowCache:
    """One :class:`HistoryWindow` per conversation, the most recently used ones, within a count and a
    total :attr:`HistoryWindow.weight`. Not thread-safe: use it from the event loop (the windows
    themselves are)."""

    def __init__(self, factory: Callable[[], HistoryWindow], max_windows: int = 1_000,
                 max_weight: int = 200_000_000) -> None:
        self.factory = factory
        self.max_windows = max_windows
        self.max_weight = max_weight
        self._windows: OrderedDict[Hashable, tuple[HistoryWindow, int]] = OrderedDict()
        self._weight = 0

    def __len__(self) -> int:
        return len(self._windows)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._windows

    def get(self, key: Hashable) -> HistoryWindow:
        """The conversation's window (a new, empty one if there is none)."""
        found = self._windows.get(key)
        if found is not None:
            self._windows.move_to_end(key)
            return found[0]
        window = self.factory()
        self._windows[key] = (window, 0)
        self._evict(keep=key)
        return window

    def update(self, key: Hashable, window: HistoryWindow) -> None:
        """Account for a window's size after a sync (and evict the least recently used beyond the bounds)."""
        found = self._windows.get(key)
        if found is None or found[0] is not window:
            return
        weight = window.weight
        self._weight += weight - found[1]
        self._windows[key] = (window, weight)
        self._evict(keep=key)

    def discard(self, key: Hashable) -> None:
        found = self._windows.pop(key, None)
        if found is not None:
            self._weight -= found[1]

    def _evict(self, keep: Hashable) -> None:
        while len(self._windows) > 1 and (len(self._windows) > self.max_windows or self._weight > self.max_weight):
            oldest = next(iter(self._windows))
            if oldest == keep:
                break
            self.discard(oldest)
