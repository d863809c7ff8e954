"""Which browser sessions have a reply in progress, so the saved-chats panel never switches chats under one.

A reply is in progress from the moment the chat function starts until its conversation is saved (the
panel's save after a reply, or Stop's). While it is, the panel refuses to open another chat, start a new
one, delete, rename or import: each of those rewrites the store the browser holds, and two rewrites in
flight at once would lose one (the reply's save or the switch). The chat function marks its tab at every
update (at least twice a second while it streams); a mark older than ``max_age`` seconds no longer counts
(a tab closed mid-reply, whose save never comes, blocks nothing). Tabs are Gradio's ``session_hash``; at
most ``max_sessions`` are kept (the oldest go first).

:meth:`Replying.turn` runs a tab's panel changes one at a time, so each one sees the marks (and the
server-side state) the one before it left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cachetools import TTLCache


class Replying:
    def __init__(self, max_age: float = 60.0, max_sessions: int = 10_000) -> None:
        self.max_age = max_age
        self.max_sessions = max_sessions
        # the sessions marked within max_age seconds; the least recently marked go first beyond max_sessions
        self._marked: TTLCache[str, float] = TTLCache(max_sessions, ttl=max_age, timer=time.monotonic)
        self._lock = threading.Lock()
        self._turns: dict[str, list] = {}  # session -> [its lock, how many wait for or hold it]

    def mark(self, session: str | None) -> None:
        """``session``'s reply is in progress (it starts, or shows an update)."""
        if not session:
            return
        with self._lock:
            self._marked[session] = time.monotonic()

    def end(self, session: str | None) -> None:
        """The session's reply is over and saved (or will never be)."""
        if session:
            with self._lock:
                self._marked.pop(session, None)

    def busy(self, session: str | None) -> bool:
        """Whether ``session`` has a reply in progress."""
        if not session:
            return False
        with self._lock:
            return session in self._marked  # a mark older than max_age has expired (no reordering)

    def marked_at(self, session: str | None) -> float | None:
        """When ``session``'s reply was last marked (``time.monotonic()``), while it is in progress."""
        with self._lock:
            return self._marked.get(session) if session else None

    def settled(self, session: str | None, wait_s: float) -> bool:
        """Whether ``session`` has no reply in progress, waiting up to ``wait_s`` seconds for one whose
        stream has ended (no mark since the wait began) to be saved; a reply still streaming ends the wait."""
        began = time.monotonic()
        while (marked := self.marked_at(session)) is not None:
            if marked > began or time.monotonic() - began >= wait_s:
                return False
            time.sleep(0.05)
        return True

    @contextmanager
    def turn(self, session: str | None) -> Iterator[None]:
        """Hold ``session``'s turn: one panel change at a time per tab (re-entrant: a handler may call
        another). A tab's lock is kept only while someone holds or waits for it."""
        if not session:
            yield
            return
        with self._lock:
            entry = self._turns.setdefault(session, [threading.RLock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    self._turns.pop(session, None)
