"""Closed browser sessions leave Gradio's memory after a grace period, instead of after Gradio's hour.

Gradio keeps every session's state (a copy of the page's config plus its ``gr.State`` values, ~120 KB a
session here) in ``blocks.state_holder`` until its LRU of 10,000 sessions evicts it, and a closed session's
``gr.State`` values for an hour; the queue keeps a message queue and an event-id set per session, and
per-event analytics even with monitoring off. A session is *closed* when its heartbeat stream ends
(``gradio/routes.py``: ``session_data[sid].is_closed = True``); Gradio never marks it open again.

:class:`SessionReaper` drops, from a Blocks' state holder and queue, the sessions closed for longer than
a grace period that have no event queued or running, then the queue's leftovers of sessions no longer
held. Everything runs on the server's event loop, where Gradio touches the same structures, so nothing
else runs in between; the state holder's own lock is taken where Gradio takes it (changing its dicts).
Start it with :meth:`SessionReaper.lifespan` (a FastAPI/Gradio ``lifespan``) or :meth:`SessionReaper.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from chatbot.compat import busy_sessions, drop_queue_leftovers, drop_sessions, held_sessions

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger("switchboard.sessions")

#: Seconds a closed session is kept (``CHATBOT_SESSION_GRACE``): a heartbeat that reconnects within it
#: (a network blip, a laptop waking up) keeps its state.
DEFAULT_GRACE = 600.0
#: Longest pause between two passes; shorter when the grace is shorter (never under MIN_INTERVAL).
DEFAULT_INTERVAL = 5.0
MIN_INTERVAL = 0.5
#: A longer grace is taken as this one (about 31 years: never, in practice).
MAX_GRACE = 1e9


class SessionReaper:
    """Drops closed sessions of ``blocks`` from its state holder and queue ``grace`` seconds after they
    closed. A session counts as closed from the first pass that sees it closed, or from its last use
    (``state_holder.time_last_used``) when that is later; so it is dropped only when it has been closed,
    and unused, for the whole grace period, and never while it has an event queued or running."""

    def __init__(self, blocks: gr.Blocks, grace: float = DEFAULT_GRACE) -> None:
        if grace < 0:
            raise ValueError(f"grace must be at least 0 seconds, got {grace!r}")
        self.blocks = blocks
        self.grace = float(grace)
        self._closed_seen: dict[str, datetime.datetime] = {}  # session hash -> first pass that saw it closed
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        """Seconds between passes of :meth:`run` when none is given."""
        return max(MIN_INTERVAL, min(DEFAULT_INTERVAL, self.grace))

    @property
    def running(self) -> bool:
        """Whether the loop started by :meth:`start` is running."""
        return self._task is not None and not self._task.done()

    def reap(self, now: datetime.datetime | None = None) -> int:
        """One pass at ``now`` (Gradio's clock: naive local time, default the current time). Returns how
        many sessions were dropped from the state holder."""
        sessions = held_sessions(self.blocks)
        if sessions is None:  # neither launched nor mounted yet
            return 0
        now = datetime.datetime.now() if now is None else now
        cutoff = now - datetime.timedelta(seconds=min(self.grace, MAX_GRACE))
        busy = busy_sessions(self.blocks)

        expired: list[str] = []
        for sid, (closed, used) in sessions.items():
            if not closed:
                self._closed_seen.pop(sid, None)
                continue
            seen = self._closed_seen.setdefault(sid, now)
            last_used = seen if used is None else used
            if seen <= cutoff and last_used <= cutoff and sid not in busy:
                expired.append(sid)

        held = drop_sessions(self.blocks, expired)
        for sid in [s for s in self._closed_seen if s not in held]:  # dropped here or by Gradio's LRU
            del self._closed_seen[sid]
        drop_queue_leftovers(self.blocks, held, busy)
        if expired:
            log.debug("dropped %d closed session(s); %d held", len(expired), len(held))
        return len(expired)

    async def run(self, interval: float | None = None) -> None:
        """Reap every ``interval`` seconds (default :attr:`interval`) until cancelled. A failing pass is
        logged and the next one runs."""
        pause = self.interval if interval is None else interval
        if pause <= 0:
            raise ValueError(f"interval must be above 0 seconds, got {pause!r}")
        while True:
            await asyncio.sleep(pause)
            try:
                self.reap()
            except Exception:
                log.exception("dropping closed sessions failed; trying again in %g s", pause)

    def start(self, interval: float | None = None) -> asyncio.Task[None]:
        """Start :meth:`run` on the running event loop, once: while it runs, its task is returned again."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(interval), name="switchboard:sessions")
        return self._task

    async def stop(self) -> None:
        """Stop the loop started by :meth:`start` and wait for it."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:  # noqa: ARG002 - the lifespan protocol
        """A lifespan (``app_kwargs={"lifespan": reaper.lifespan}`` for Gradio's launch or mount): the loop
        runs while the server does and stops at shutdown."""
        self.start()
        try:
            yield
        finally:
            await self.stop()

