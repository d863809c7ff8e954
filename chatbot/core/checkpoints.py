"""Replies in progress saved as they stream, and final saves retried until the store takes them.

:class:`Checkpoints` belongs to one process's chat service. Every :data:`~chatbot.core.leases.CHECKPOINT_SECONDS`
one task saves the text so far of every reply that grew (and renews the lease of every reply, grown or
not, at least every :data:`~chatbot.core.leases.RENEW_SECONDS`) in one batched store write, off the event loop
(the SQLite store writes from a worker thread; Redis is one pipelined round trip). So a crash (kill -9)
loses at most about a second of each reply.

A final save the store refuses (a full disk, Redis down) is kept in memory and retried on the same beat
until the store takes it: the row is repaired when the store recovers (unless the process stops first,
or the conversation was lost by the store meanwhile). The caller learns the save failed
(:meth:`Checkpoints.finish` says ``failed``) and tells its client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from chatbot.core.leases import CHECKPOINT_SECONDS, RENEW_SECONDS
from chatbot.core.store import Status, Store, StoreError, Turn

log = logging.getLogger("switchboard.checkpoints")

#: Final saves kept for retrying at most; beyond that the oldest is given up (and logged).
MAX_PENDING = 10_000

#: How a final save went: stored; not stored because the conversation was deleted meanwhile; or refused by
#: the store (kept and retried).
Outcome = Literal["stored", "deleted", "failed"]


@dataclass(eq=False)
class Progress:
    """One reply in progress: its turn and the list its text deltas are appended to."""

    turn: Turn
    parts: list[str]
    saved_parts: int = 0
    saved_at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Final:
    """A final save the store refused, kept for retrying."""

    turn: Turn
    content: str
    status: Status
    fields: dict[str, Any]


class Checkpoints:
    def __init__(self, store: Store, interval: float = CHECKPOINT_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self.active: set[Progress] = set()
        self.pending: list[Final] = []
        self._task: asyncio.Task | None = None
        self._failing = False

    def track(self, turn: Turn, parts: list[str]) -> Progress:
        progress = Progress(turn, parts)
        self.active.add(progress)
        self._start()
        return progress

    def untrack(self, progress: Progress | None) -> None:
        if progress is not None:
            self.active.discard(progress)

    async def finish(self, turn: Turn, content: str, status: Status, **fields: Any) -> Outcome:
        """Store a reply's end; when the store refuses it, keep it and retry in the background."""
        try:
            return "stored" if await self.store.finish_turn(turn, content, status, **fields) else "deleted"
        except StoreError as exc:
            log.error("could not store a reply (will retry until the store takes it): %s", exc)
            if len(self.pending) >= MAX_PENDING:
                dropped = self.pending.pop(0)
                log.error("gave up storing a reply of conversation %s", dropped.turn.conversation_id)
            self.pending.append(Final(turn, content, status, fields))
            self._start()
            return "failed"

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while self.active or self.pending:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # pragma: no cover - the beat must go on; a bug is logged
                log.exception("saving replies in progress failed")

    async def tick(self) -> None:
        """One beat: save what grew (renewing leases), then retry the refused final saves."""
        now = time.monotonic()
        due = [p for p in list(self.active)
               if len(p.parts) != p.saved_parts or now - p.saved_at >= RENEW_SECONDS]
        if due:
            counts = [len(p.parts) for p in due]
            batch = [(p.turn, "".join(p.parts[:n])) for p, n in zip(due, counts, strict=True)]
            try:
                await self.store.save_partials(batch)
            except StoreError as exc:
                if not self._failing:
                    log.error("could not save replies in progress: %s", exc, exc_info=exc)
                self._failing = True
            else:
                self._failing = False
                for progress, count in zip(due, counts, strict=True):
                    progress.saved_parts, progress.saved_at = count, now
        await self.retry()

    async def retry(self) -> None:
        """Try the refused final saves again, oldest first; stop at the first the store still refuses."""
        while self.pending:
            final = self.pending[0]
            try:
                stored = await self.store.finish_turn(final.turn, final.content, final.status, **final.fields)
            except StoreError:
                return
            self.pending.pop(0)
            if stored:
                log.info("stored a reply of conversation %s after the store recovered", final.turn.conversation_id)
            else:
                log.warning(
                    "a reply of conversation %s could not be stored: the store no longer has the conversation",
                    final.turn.conversation_id,
                )

    async def close(self) -> None:
        """At shutdown: one last try for the refused saves, then stop the beat."""
        self.active.clear()
        if self.pending:
            await self.retry()
        if self.pending:
            log.error("%d reply(ies) could not be stored before shutdown", len(self.pending))
            self.pending.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
