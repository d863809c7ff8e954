"""Which browser sessions have a reply in progress, so the saved-chats panel never switches chats under one.

A reply is in progress from the moment the chat function starts until its conversation is saved (the
panel's save after a reply, or Stop's). While it is, the panel refuses to open another chat, start a new
one, delete, rename or import: each of those rewrites the store the browser holds, and two rewrites in
flight at once would lose one (the reply's save or the switch). The chat function marks its tab at every
update (at least twice a second while it streams); a mark older than ``max_age`` seconds no longer counts
(a tab closed mid-reply, whose save never comes, blocks nothing). Tabs are Gradio's ``session_hash``; at
most ``max_sessions`` are kept (the oldest go first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class Replying:
    def __init__(self, max_age: float = 60.0, max_sessions: int = 10_000) -> None:
        self.max_age = max_age
        self.max_sessions = max_sessions
        self._marked: OrderedDict[str, float] = OrderedDict()  # session -> its reply's latest update
        self._lock = threading.Lock()

    def mark(self, session: str | None) -> None:
        """``session``'s reply is in progress (it starts, or shows an update)."""
        if not session:
            return
        with self._lock:
            self._marked[session] = time.monotonic()
            self._marked.move_to_end(session)
            while len(self._marked) > self.max_sessions:
                self._marked.popitem(last=False)

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
            marked = self._marked.get(session)
        return marked is not None and time.monotonic() - marked < self.max_age
