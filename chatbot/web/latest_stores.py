"""The saved-chats store each tab was last sent, so a handler never works on an older copy.

The store lives in the browser, and an event carries the copy the browser held when it was triggered. A
click right after a reply ends can leave before that reply's save has come back: the copy it carries lacks
the reply, and writing it back would lose it (or a chat's settings). Every store the panel sends a tab is
numbered (``rev``) and kept here for a minute; a copy that comes back with a lower number is replaced by
the one kept. Bounded by the characters kept (stores are at most :data:`chatbot.web.chats.MAX_STORE_CHARS`).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cachetools import TTLCache

#: How long a sent store is kept (seconds): far longer than a save takes to reach the browser.
KEEP_S = 60.0
#: Most characters of stores kept for all tabs together.
MAX_CHARS = 50_000_000
#: The panel's handlers that change the list, and how long one waits for the tab's reply to be saved (seconds).
WAITS = frozenset({"open", "start_new", "cleared", "renamed", "deleted", "restored", "imported"})
SAVE_WAIT_S = 10.0


def _rev(store: Mapping[str, Any]) -> int:
    rev = store.get("rev")
    return rev if isinstance(rev, int) and not isinstance(rev, bool) and rev >= 0 else 0


class LatestStores:
    def __init__(self, keep_s: float = KEEP_S, max_chars: int = MAX_CHARS) -> None:
        self._kept: TTLCache[str, tuple[int, dict[str, Any]]] = TTLCache(
            max_chars, ttl=keep_s, timer=time.monotonic, getsizeof=lambda item: item[0])
        self._lock = threading.Lock()
        self._searches: TTLCache[str, str] = TTLCache(10_000, ttl=keep_s, timer=time.monotonic)

    def fresh(self, session: str | None, store: dict[str, Any]) -> dict[str, Any]:
        """``store`` (a copy a tab sent, already cleaned), or the newer one this tab was sent since."""
        if not session:
            return store
        with self._lock:
            kept = self._kept.get(session)
        return kept[1] if kept is not None and _rev(kept[1]) > _rev(store) else store

    def searched(self, session: str | None, query: str) -> str:
        """``query``, the tab's search as it now stands (kept: a save that follows lists what it matches)."""
        if session:
            with self._lock:
                self._searches[session] = query[:200]
        return query

    def search(self, session: str | None, given: object) -> object:
        """The tab's latest search, else ``given`` (the box's value when the event left the browser)."""
        with self._lock:
            kept = self._searches.get(session) if session else None
        return given if kept is None else kept

    def sent(self, session: str | None, store: dict[str, Any]) -> dict[str, Any]:
        """``store`` numbered after every copy this tab has (to send it), and kept (no tab: as it is)."""
        if not session:
            return store
        with self._lock:
            kept = self._kept.get(session)
            numbered = {**store, "rev": max(_rev(store), _rev(kept[1]) if kept else 0) + 1}
            size = len(json.dumps(numbered, ensure_ascii=False))
            if size <= self._kept.maxsize:
                self._kept[session] = (size, numbered)
        return numbered


def one_at_a_time(handler: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """A handler (one argument the gr.Request) run in its tab's turn (see Replying.turn); the store it returns
    is numbered and kept (chatbot.web.latest_stores). One that changes the list (:data:`WAITS`) first waits,
    outside the turn, for a reply whose stream has ended to be saved (Replying.settled)."""

    @functools.wraps(handler)
    def run(self: Any, *args: Any) -> tuple[Any, ...]:
        session = next((s for a in reversed(args) if isinstance(s := getattr(a, "session_hash", None), str)), None)
        depth = getattr(self._held, "depth", 0)
        if handler.__name__ in WAITS and not depth:
            self.replying.settled(session, self.save_wait_s)
        self._held.depth = depth + 1
        try:
            with self.replying.turn(session):
                out = handler(self, *args)
        finally:
            self._held.depth = depth
        stored = bool(out) and isinstance(out[0], dict) and "chats" in out[0]  # (gr.skip() is a dict too)
        return (self.latest.sent(session, out[0]), *out[1:]) if stored else out

    return run
