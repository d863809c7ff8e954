"""The conversation store in one SQLite file (the default; :mod:`chatbot.core.store` has the contract).

Every change runs in one ``BEGIN IMMEDIATE`` transaction (which also serialises several processes sharing
the file). The connection is used from worker threads only, under a lock, so the event loop never blocks
on disk. A long conversation is not read back whole every turn: the store keeps, per conversation, the
messages that have ended and reads only the newer ones (:class:`~chatbot.core.ended_rows.EndedRows`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from chatbot.core.ended_rows import EndedRows
from chatbot.core.leases import LEASE_SECONDS, expired, new_holder
from chatbot.core.store import (
    Conversation,
    Message,
    Status,
    StoreError,
    Turn,
    context_from_rows,
    error_reason,
    has_stale,
    new_conversation_id,
    valid_id,
)

log = logging.getLogger("switchboard.store")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    model TEXT,
    error TEXT,
    finish_reason TEXT,
    usage TEXT,
    holder TEXT,
    lease REAL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
"""

_COLUMNS = "seq, role, content, status, created_at, model, error, finish_reason, usage, holder, lease"

#: Added to a database made before leases; the index finds the replies still streaming at once.
_LEASE_SCHEMA = (
    "ALTER TABLE messages ADD COLUMN holder TEXT",
    "ALTER TABLE messages ADD COLUMN lease REAL",
)
_STREAMING_INDEX = (
    "CREATE INDEX IF NOT EXISTS messages_streaming ON messages (conversation_id, seq) WHERE status = 'streaming'"
)


def _row_message(row: tuple) -> Message:
    seq, role, content, status, created_at, model, error, finish_reason, usage, holder, lease = row
    return Message(
        seq, role, content, status, created_at, model, error, finish_reason,
        json.loads(usage) if usage else None, holder, lease,
    )


def _expire_stale(db: sqlite3.Connection, conversation_id: str | None, me: str, reason: str) -> int:
    """Mark interrupted the replies (of one conversation, or all) still streaming whose lease ran out.
    Run inside a write transaction."""
    where, args = ("conversation_id = ? AND ", (conversation_id,)) if conversation_id else ("", ())
    rows = db.execute(
        f"SELECT conversation_id, seq, holder, lease FROM messages WHERE {where}status = 'streaming'", args
    ).fetchall()
    now = time.time()
    stale = [(reason, cid, seq) for cid, seq, holder, lease in rows if expired(holder, lease, now, me)]
    db.executemany(
        "UPDATE messages SET status = 'interrupted', error = COALESCE(error, ?) "
        "WHERE conversation_id = ? AND seq = ? AND status = 'streaming'",
        stale,
    )
    return len(stale)


class SQLiteStore:
    """Conversations in one SQLite file (created, with its folder, on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.ended = EndedRows()
        self.holder = new_holder()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
            for statement in _LEASE_SCHEMA if "lease" not in columns else ():
                self._db.execute(statement)
            self._db.execute(_STREAMING_INDEX)
            # Replies that were streaming when a previous process stopped will never be finished.
            swept = self._transaction(self._db, lambda: _expire_stale(self._db, None, self.holder, "restart"))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"CHATBOT_DB: cannot open the conversation database {str(path)!r} ({error_reason(exc)})"
            ) from None
        if swept:
            log.info("marked %d reply(ies) left streaming by a previous run as interrupted", swept)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._db)

        try:
            return await asyncio.to_thread(locked)
        except sqlite3.Error as exc:
            log.exception("conversation database error")
            raise StoreError(f"the conversation database failed ({error_reason(exc)})") from None

    @staticmethod
    def _transaction(db: sqlite3.Connection, fn: Callable[[], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def begin_turn(
        self, conversation_id: str | None, owner: str, message: str, model: str, context_messages: int
    ) -> Turn | None:
        if conversation_id is not None and not valid_id(conversation_id):
            return None
        now = time.time()

        def work(db: sqlite3.Connection) -> Turn | None:
            def body() -> Turn | None:
                created = conversation_id is None
                cid = new_conversation_id() if conversation_id is None else conversation_id
                if created:
                    db.execute(
                        "INSERT INTO conversations (id, owner, created_at, updated_at, next_seq) "
                        "VALUES (?, ?, ?, ?, 1)",
                        (cid, owner, now, now),
                    )
                    seq = 1
                else:
                    row = db.execute(
                        "SELECT owner, next_seq FROM conversations WHERE id = ?", (cid,)
                    ).fetchone()
                    if row is None or row[0] != owner:
                        return None
                    seq = row[1]
                db.execute(
                    "UPDATE conversations SET next_seq = ?, updated_at = ? WHERE id = ?", (seq + 2, now, cid)
                )
                if not created:
                    _expire_stale(db, str(cid), self.holder, "lease_expired")
                first = max(1, seq - context_messages)
                self.ended.check_version(db.execute("PRAGMA data_version").fetchone()[0])
                known = None if created else self.ended.known(cid, first, seq)
                if known:
                    first = known[-1][0] + 1
                rows = db.execute(
                    "SELECT seq, role, content, status FROM messages WHERE conversation_id = ? AND seq >= ? "
                    "ORDER BY seq",
                    (cid, first),
                ).fetchall()
                self.ended.keep(cid, known, rows)
                if known:
                    rows = known + rows
                db.executemany(
                    "INSERT INTO messages (conversation_id, seq, role, content, status, created_at, model, "
                    "holder, lease) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(cid, seq, "user", message, "complete", now, model, None, None),
                     (cid, seq + 1, "assistant", "", "streaming", now, model, self.holder, now + LEASE_SECONDS)],
                )
                history = context_from_rows(rows)
                return Turn(str(cid), seq, seq + 1, model, history, created)

            return self._transaction(db, body)

        return await self._run(work)

    async def finish_turn(
        self,
        turn: Turn,
        content: str,
        status: Status,
        *,
        error: str | None = None,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> bool:
        now = time.time()
        usage_text = json.dumps(usage) if usage is not None else None

        def work(db: sqlite3.Connection) -> bool:
            def body() -> bool:
                changed = db.execute(
                    "UPDATE messages SET content = ?, status = ?, error = ?, finish_reason = ?, usage = ? "
                    "WHERE conversation_id = ? AND seq = ?",
                    (content, status, error, finish_reason, usage_text, turn.conversation_id, turn.reply_seq),
                ).rowcount
                if self.ended.covers(turn.conversation_id, turn.reply_seq):  # it was marked interrupted
                    self.ended.discard(turn.conversation_id)
                if changed:
                    db.execute(
                        "UPDATE conversations SET updated_at = ? WHERE id = ?", (now, turn.conversation_id)
                    )
                return bool(changed)

            return self._transaction(db, body)

        return await self._run(work)

    async def save_partials(self, parts: list[tuple[Turn, str]]) -> None:
        if not parts:
            return
        lease = time.time() + LEASE_SECONDS
        rows = [(text, lease, turn.conversation_id, turn.reply_seq, self.holder) for turn, text in parts]

        def work(db: sqlite3.Connection) -> None:
            def body() -> None:
                db.executemany(
                    "UPDATE messages SET content = ?, lease = ? "
                    "WHERE conversation_id = ? AND seq = ? AND status = 'streaming' AND holder = ?",
                    rows,
                )

            self._transaction(db, body)

        await self._run(work)

    async def get(self, conversation_id: str, owner: str) -> Conversation | None:
        found = await self._get(conversation_id, owner)
        if found is not None and has_stale(found, self.holder):
            await self._run(lambda db: self._transaction(
                db, lambda: _expire_stale(db, conversation_id, self.holder, "lease_expired")
            ))
            found = await self._get(conversation_id, owner)
        return found

    async def _get(self, conversation_id: str, owner: str) -> Conversation | None:
        if not valid_id(conversation_id):
            return None

        def work(db: sqlite3.Connection) -> Conversation | None:
            def body() -> Conversation | None:
                row = db.execute(
                    "SELECT owner, created_at, updated_at FROM conversations WHERE id = ?", (conversation_id,)
                ).fetchone()
                if row is None or row[0] != owner:
                    return None
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq",
                    (conversation_id,),
                ).fetchall()
                return Conversation(conversation_id, row[1], row[2], [_row_message(r) for r in rows])

            db.execute("BEGIN")  # one snapshot for both reads
            try:
                return body()
            finally:
                db.execute("COMMIT")

        return await self._run(work)

    async def delete(self, conversation_id: str, owner: str) -> bool:
        if not valid_id(conversation_id):
            return False

        def work(db: sqlite3.Connection) -> bool:
            def body() -> bool:
                gone = db.execute(
                    "DELETE FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
                ).rowcount
                self.ended.discard(conversation_id)
                if gone:
                    db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
                return bool(gone)

            return self._transaction(db, body)

        return await self._run(work)

    async def close(self) -> None:
        def work() -> None:
            with self._lock:
                self._db.close()

        await asyncio.to_thread(work)
