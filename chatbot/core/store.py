"""Conversation store for the HTTP API: SQLite by default, Redis when ``REDIS_URL`` is set.

A conversation is a sequence of messages with contiguous numbers. Each turn takes two numbers at once,
atomically: the user's message (stored complete the moment the API accepts it) and a placeholder for the
reply (status ``streaming``), which :meth:`Store.finish_turn` fills in when the reply ends, ``complete``
or ``interrupted`` (an error, a dropped client, a Stop) with whatever text was produced. Because the two
numbers are reserved together, racing requests on one conversation can neither lose a message nor
interleave one turn's reply into another's; each turn sees as context only the turns that had ended.

A reply in progress has a holder and a lease (:mod:`chatbot.core.leases`): :meth:`Store.save_partials` saves
the text streamed so far and renews the lease (one batched write for all the replies of a process, about
every second), and a reply whose lease ran out is marked ``interrupted``, keeping that text, by whichever
process reads it next.

Atomicity: SQLite runs every change in one ``BEGIN IMMEDIATE`` transaction (which also serialises
several processes sharing the file); Redis runs every change as one Lua script. The SQLite connection is
used from worker threads only, under a lock, so the event loop never blocks on disk.

A long conversation is not read back whole every turn: the SQLite store keeps, per conversation, the
messages that have ended (they no longer change) and reads only the newer ones (:class:`EndedRows`).

Every conversation has an owner (a hash of the API token that created it, or ``""`` when the API runs
without tokens); reading, continuing or deleting with another owner is the same as the id not existing.
Stored history is never trimmed; only what is sent upstream is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from chatbot.core.leases import LEASE_SECONDS, expired, new_holder
from chatbot.core.settings import Settings

log = logging.getLogger("switchboard.store")

T = TypeVar("T")

Status = Literal["complete", "streaming", "interrupted"]

#: What conversation ids look like (``uuid4().hex``); anything else is unknown without a lookup.
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class StoreError(Exception):
    """The store cannot be used (file not writable, Redis unreachable). The message is safe to show:
    it never contains a password or a token."""


@dataclass(frozen=True)
class Message:
    seq: int
    role: str
    content: str
    status: Status
    created_at: float
    model: str | None = None
    error: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    #: While ``streaming``: the process streaming the reply, and until when it vouches for it.
    holder: str | None = None
    lease: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "role": self.role, "content": self.content, "status": self.status,
            "created_at": self.created_at, "model": self.model, "error": self.error,
            "finish_reason": self.finish_reason, "usage": self.usage, "holder": self.holder,
            "lease": self.lease,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        return cls(
            seq=int(data["seq"]), role=str(data["role"]), content=str(data["content"]),
            status=data["status"], created_at=float(data["created_at"]), model=data.get("model"),
            error=data.get("error"), finish_reason=data.get("finish_reason"), usage=data.get("usage"),
            holder=data.get("holder"), lease=data.get("lease"),
        )


@dataclass(frozen=True)
class Conversation:
    id: str
    created_at: float
    updated_at: float
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Turn:
    """One accepted message and the reserved place of its reply."""

    conversation_id: str
    user_seq: int
    reply_seq: int
    model: str
    history: list[dict[str, str]]
    """The context for the upstream: user/assistant text of the turns that had ended (newest last)."""
    created: bool = False
    """True when this turn started the conversation."""


Row = tuple[int, str, str, str]
"""``(seq, role, content, status)``: what a turn reads back of a stored message."""


def new_conversation_id() -> str:
    return uuid.uuid4().hex


def valid_id(conversation_id: object) -> bool:
    return isinstance(conversation_id, str) and bool(_ID_RE.match(conversation_id))


def context_from(messages: list[Message]) -> list[dict[str, str]]:
    """The upstream context in stored messages: whole turns whose reply has ended with some text.

    Turns still streaming (another request's) and turns whose reply failed before any text are left
    out, so what the model sees alternates user and assistant and never carries a question that was
    never answered."""
    return context_from_rows([(m.seq, m.role, m.content, m.status) for m in messages])


def context_from_rows(rows: list[Row]) -> list[dict[str, str]]:
    """:func:`context_from` on ``(seq, role, content, status)`` rows in seq order (what the store reads
    for a turn: building a Message per row, usage JSON parsed, cost more than the rest of a turn)."""
    out: list[dict[str, str]] = []
    append = out.append
    pairs = zip(rows, islice(rows, 1, None), strict=False)  # each message and the one after it
    for (seq, role, content, _status), (next_seq, next_role, reply, status) in pairs:
        if role == "user" and next_seq == seq + 1 and next_role == "assistant" and reply and status != "streaming":
            append({"role": "user", "content": content})
            append({"role": "assistant", "content": reply})
    return out


class Store(Protocol):
    """What the API needs from a conversation store. Every method may raise :class:`StoreError`."""

    async def begin_turn(
        self, conversation_id: str | None, owner: str, message: str, model: str, context_messages: int
    ) -> Turn | None:
        """Store ``message`` and reserve its reply. ``conversation_id`` None starts a conversation.
        None when the id is unknown or belongs to another owner. ``context_messages`` bounds how
        many earlier stored messages are read back as context."""
        ...

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
        """Fill in the reply. False when the conversation was deleted meanwhile."""
        ...

    async def save_partials(self, parts: list[tuple[Turn, str]]) -> None:
        """Save the text so far of replies this store is streaming and renew their leases, in one write.
        A reply that has ended meanwhile (or was taken as lost) is left as it is."""
        ...

    async def get(self, conversation_id: str, owner: str) -> Conversation | None:
        """The conversation; replies whose lease ran out are marked interrupted first."""
        ...

    async def delete(self, conversation_id: str, owner: str) -> bool: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------------------------- SQLite

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


#: What :class:`EndedRows` keeps at most: conversations (the most recently continued) and characters of
#: message text in all of them.
ENDED_CONVERSATIONS = 256
ENDED_CHARS = 32_000_000


class EndedRows:
    """Per conversation, a run of stored messages with contiguous numbers that have all ended (no reply
    among them still streaming), so that a turn reads back from the database only the messages after them:
    with 2,000 turns stored, reading and decoding all of them cost 5-7 ms of CPU per turn.

    An ended message changes only when a reply that was still streaming when another process opened the
    file (which marks it interrupted) is finished after all: :meth:`covers` lets ``finish_turn`` drop the
    conversation then, and :meth:`check_version` drops everything when another connection has written
    to the file at all (``PRAGMA data_version``). Used under the store's lock only."""

    def __init__(self, max_conversations: int = ENDED_CONVERSATIONS, max_chars: int = ENDED_CHARS) -> None:
        self.max_conversations = max_conversations
        self.max_chars = max_chars
        self._rows: OrderedDict[str, tuple[list[Row], int]] = OrderedDict()  # rows, their characters
        self.chars = 0
        self._version: int | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def check_version(self, version: int) -> None:
        """``version`` is the connection's ``PRAGMA data_version`` in the current transaction."""
        if version != self._version:
            self._rows.clear()
            self.chars = 0
            self._version = version

    def known(self, conversation_id: str, first: int, before: int) -> list[Row] | None:
        """The kept rows numbered ``first`` and up (all of them below ``before``), or None when the kept
        run does not start at or before ``first``."""
        entry = self._rows.get(conversation_id)
        if entry is None:
            return None
        rows = entry[0]
        start = rows[0][0]
        if start > first or rows[-1][0] >= before:
            self.discard(conversation_id)
            return None
        self._rows.move_to_end(conversation_id)
        return rows[first - start:] if first > start else rows

    def keep(self, conversation_id: str, known: list[Row] | None, rows: list[Row]) -> None:
        """``known`` (what :meth:`known` gave) and then ``rows`` are the conversation's messages from some
        number on, in order: keep the ended run at their front."""
        entry = self._rows.pop(conversation_id, None)
        chars = 0
        if entry is not None:
            self.chars -= entry[1]
            if known:  # the kept run, less the messages that left the context window at its front
                kept = entry[0]
                chars = entry[1] - sum(len(row[2]) for row in islice(kept, len(kept) - len(known)))
        base = known[-1][0] + 1 if known else rows[0][0] if rows else 0
        end = 0
        for seq, _role, content, status in rows:
            if status == "streaming" or seq != base + end:
                break
            chars += len(content)
            end += 1
        ended = (known or []) + (rows if end == len(rows) else rows[:end])
        if not ended or chars > self.max_chars:
            return
        self._rows[conversation_id] = (ended, chars)
        self.chars += chars
        while len(self._rows) > self.max_conversations or self.chars > self.max_chars:
            _, (_, dropped) = self._rows.popitem(last=False)
            self.chars -= dropped

    def covers(self, conversation_id: str, seq: int) -> bool:
        entry = self._rows.get(conversation_id)
        return entry is not None and entry[0][0][0] <= seq <= entry[0][-1][0]

    def discard(self, conversation_id: str) -> None:
        entry = self._rows.pop(conversation_id, None)
        if entry is not None:
            self.chars -= entry[1]


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
                f"CHATBOT_DB: cannot open the conversation database {str(path)!r} ({_reason(exc)})"
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
            raise StoreError(f"the conversation database failed ({_reason(exc)})") from None

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
                cid = new_conversation_id() if created else conversation_id
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
        if found is not None and _has_stale(found, self.holder):
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


# ---------------------------------------------------------------------------------------------- Redis

# KEYS: conversation hash, messages hash. ARGV: owner, create ("1"/"0"), now, user json, reply json,
# how many earlier messages to return. Returns {status} or {seq, n1, json1, n2, json2, ...}: status -1
# means the new id exists already, 0 unknown or foreign; otherwise the user message's number.
_BEGIN = """
local conv, msgs = KEYS[1], KEYS[2]
local owner, create, now = ARGV[1], ARGV[2], ARGV[3]
if create == '1' then
  if redis.call('EXISTS', conv) == 1 then return {-1} end
  redis.call('HSET', conv, 'owner', owner, 'created_at', now, 'updated_at', now, 'next_seq', 1)
else
  local found = redis.call('HGET', conv, 'owner')
  if not found or found ~= owner then return {0} end
end
local seq = tonumber(redis.call('HGET', conv, 'next_seq'))
redis.call('HSET', conv, 'next_seq', seq + 2, 'updated_at', now)
local out = {seq}
local first = math.max(1, seq - tonumber(ARGV[6]))
if first < seq then
  local fields = {}
  for i = first, seq - 1 do fields[#fields + 1] = tostring(i) end
  local values = redis.call('HMGET', msgs, unpack(fields))
  for i = 1, #values do
    if values[i] then out[#out + 1] = fields[i]; out[#out + 1] = values[i] end
  end
end
redis.call('HSET', msgs, tostring(seq), ARGV[4], tostring(seq + 1), ARGV[5])
return out
"""

# KEYS: conversation hash, messages hash. ARGV: reply number, reply json, now.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
return 1
"""

# KEYS: conversation hash, messages hash. ARGV: reply number, holder, content, lease. Saves a partial reply
# (and renews its lease) only while it is streaming and held by the caller.
_PARTIAL = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local m = cjson.decode(raw)
if m.status ~= 'streaming' or m.holder ~= ARGV[2] then return 0 end
m.content = ARGV[3]
m.lease = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(m))
return 1
"""

# KEYS: conversation hash, messages hash. ARGV: reply number, its holder as read, reason. Marks a reply whose
# lease ran out interrupted, keeping its text, unless it changed hands or ended meanwhile.
_EXPIRE = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local m = cjson.decode(raw)
if m.status ~= 'streaming' or (m.holder or '') ~= ARGV[2] then return 0 end
m.status = 'interrupted'
if type(m.error) ~= 'string' then m.error = ARGV[3] end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(m))
return 1
"""

# KEYS: conversation hash, messages hash. ARGV: owner. Returns false or {created, updated, {n, json, ...}}.
_GET = """
local found = redis.call('HMGET', KEYS[1], 'owner', 'created_at', 'updated_at')
if not found[1] or found[1] ~= ARGV[1] then return false end
return {found[2], found[3], redis.call('HGETALL', KEYS[2])}
"""

# KEYS: conversation hash, messages hash. ARGV: owner.
_DELETE = """
local found = redis.call('HGET', KEYS[1], 'owner')
if not found or found ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


class RedisStore:
    """Conversations in Redis, shared by every app process that points at the same server.

    Keys: ``{prefix}conv:{id}`` (a hash: owner, times, next number) and ``{prefix}conv:{id}:msgs`` (a
    hash from message number to the message as JSON). Every change is one Lua script, so it is atomic
    across processes without a lock that a crashed process could leave behind."""

    def __init__(self, url: str, key_prefix: str = "switchboard:") -> None:
        import redis.asyncio as aioredis

        self.prefix = key_prefix
        try:
            self._redis = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        except ValueError:
            raise StoreError("REDIS_URL: not a URL the Redis client can use") from None
        self.holder = new_holder()
        self._begin = self._redis.register_script(_BEGIN)
        self._finish = self._redis.register_script(_FINISH)
        self._partial = self._redis.register_script(_PARTIAL)
        self._expire = self._redis.register_script(_EXPIRE)
        self._get = self._redis.register_script(_GET)
        self._delete = self._redis.register_script(_DELETE)

    def _keys(self, conversation_id: str) -> list[str]:
        base = f"{self.prefix}conv:{conversation_id}"
        return [base, base + ":msgs"]

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        try:
            try:
                return await script(keys=keys, args=args)
            except RedisConnectionError:  # a restarted Redis: its old connections are dead, reconnect once
                await self._redis.connection_pool.disconnect()
                return await script(keys=keys, args=args)
        except RedisError as exc:
            log.exception("redis error")
            raise StoreError(f"the conversation store (Redis) failed ({type(exc).__name__})") from None
        except OSError as exc:
            raise StoreError(f"the conversation store (Redis) is unreachable ({_reason(exc)})") from None

    async def ping(self) -> None:
        from redis.exceptions import RedisError

        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"REDIS_URL: cannot reach Redis ({type(exc).__name__}: {_reason(exc)})") from None

    async def begin_turn(
        self, conversation_id: str | None, owner: str, message: str, model: str, context_messages: int
    ) -> Turn | None:
        if conversation_id is not None and not valid_id(conversation_id):
            return None
        created = conversation_id is None
        now = time.time()
        user = _dumps(Message(0, "user", message, "complete", now, model))
        reply = _dumps(Message(0, "assistant", "", "streaming", now, model, holder=self.holder,
                               lease=now + LEASE_SECONDS))
        for _ in range(3):  # a fresh id that exists already (never seen in practice) is drawn again
            cid = new_conversation_id() if created else str(conversation_id)
            args = [owner, "1" if created else "0", repr(now), user, reply, context_messages]
            result = await self._call(self._begin, self._keys(cid), args)
            seq = int(result[0])
            if seq > 0:
                break
            if seq == 0:
                return None
        else:
            raise StoreError("could not allocate a new conversation id")
        earlier = await self._expire_stale(cid, _loads_pairs(result[1:]))
        return Turn(cid, seq, seq + 1, model, context_from(earlier), created)

    async def _expire_stale(self, conversation_id: str, messages: list[Message]) -> list[Message]:
        """``messages`` with the replies whose lease ran out marked interrupted (in Redis too)."""
        if not _has_stale(messages, self.holder):
            return messages
        now = time.time()
        out = []
        for m in messages:
            if m.status == "streaming" and expired(m.holder, m.lease, now, self.holder):
                args = [str(m.seq), m.holder or "", "lease_expired"]
                if await self._call(self._expire, self._keys(conversation_id), args):
                    m = dataclasses.replace(m, status="interrupted", error=m.error or "lease_expired")
            out.append(m)
        return out

    async def save_partials(self, parts: list[tuple[Turn, str]]) -> None:
        if not parts:
            return
        from redis.exceptions import RedisError

        lease = repr(time.time() + LEASE_SECONDS)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for turn, text in parts:
                    args = [str(turn.reply_seq), self.holder, text, lease]
                    await self._partial(keys=self._keys(turn.conversation_id), args=args, client=pipe)
                await pipe.execute()
        except RedisError as exc:  # the cause is kept: Checkpoints logs it
            raise StoreError(f"the conversation store (Redis) failed ({type(exc).__name__})") from exc
        except OSError as exc:
            raise StoreError(f"the conversation store (Redis) is unreachable ({_reason(exc)})") from exc

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
        reply = Message(
            turn.reply_seq, "assistant", content, status, now, turn.model, error, finish_reason, usage
        )
        args = [str(turn.reply_seq), _dumps(reply), repr(now)]
        return bool(await self._call(self._finish, self._keys(turn.conversation_id), args))

    async def get(self, conversation_id: str, owner: str) -> Conversation | None:
        if not valid_id(conversation_id):
            return None
        result = await self._call(self._get, self._keys(conversation_id), [owner])
        if not result:
            return None
        created_at, updated_at, pairs = result
        messages = await self._expire_stale(conversation_id, _loads_pairs(pairs))
        return Conversation(conversation_id, float(created_at), float(updated_at), messages)

    async def delete(self, conversation_id: str, owner: str) -> bool:
        if not valid_id(conversation_id):
            return False
        return bool(await self._call(self._delete, self._keys(conversation_id), [owner]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.aclose()


def _has_stale(found: Conversation | list[Message], me: str) -> bool:
    messages = found.messages if isinstance(found, Conversation) else found
    now = time.time()
    return any(m.status == "streaming" and expired(m.holder, m.lease, now, me) for m in messages)


def _dumps(message: Message) -> str:
    data = message.as_json()
    del data["seq"]  # the hash field is the number
    return json.dumps(data, separators=(",", ":"))


def _loads_pairs(pairs: list[str]) -> list[Message]:
    """Messages from a flat ``[number, json, number, json, ...]`` list, in order."""
    out = [
        Message.from_json({**json.loads(pairs[i + 1]), "seq": int(pairs[i])}) for i in range(0, len(pairs), 2)
    ]
    out.sort(key=lambda m: m.seq)
    return out


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for an OS or database error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def open_store(settings: Settings) -> Store:
    """The store the settings name: Redis when ``REDIS_URL`` is set, else SQLite at ``CHATBOT_DB``.
    Raises :class:`StoreError` when the SQLite file cannot be opened."""
    if settings.redis_url:
        return RedisStore(settings.redis_url.get_secret_value())
    return SQLiteStore(settings.db_path)


def check_redis(settings: Settings, timeout: float = 5.0) -> None:
    """With ``REDIS_URL`` set, fail fast (blocking) with a clear :class:`StoreError` when Redis cannot be
    reached, rather than answer every API call with 503 later."""
    if not settings.redis_url:
        return
    import redis

    try:
        client = redis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_connect_timeout=timeout, socket_timeout=timeout
        )
        try:
            client.ping()
            problem = redis_persistence_problem(client)
        finally:
            client.close()
    except ValueError:
        raise StoreError("REDIS_URL: not a URL the Redis client can use") from None
    except (redis.RedisError, OSError) as exc:
        raise StoreError(f"REDIS_URL: cannot reach Redis ({type(exc).__name__}: {_reason(exc)})") from None
    if problem:
        log.warning("REDIS_URL: %s", problem)


def redis_persistence_problem(client: Any) -> str | None:
    """Why the Redis server behind ``client`` (redis-py, blocking) may lose conversations, or None when it
    keeps every write with an append-only file fsynced at least every second (``appendonly yes``,
    ``appendfsync everysec`` or ``always``). A server that refuses ``CONFIG`` (managed Redis often does)
    gets a reminder instead of a check."""
    import redis

    try:
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync"), **client.config_get("save")}
    except redis.RedisError:
        return (
            "could not check how Redis persists data (CONFIG is disabled): make sure it runs with "
            "appendonly yes and appendfsync everysec (or always), or a Redis restart loses conversations."
        )
    text = {str(k): str(v) for k, v in config.items()}
    if text.get("appendonly") != "yes":
        snapshots = f"only snapshots (save {text.get('save')!r})" if text.get("save") else "no persistence"
        return (
            f"this Redis keeps {snapshots}, so a crash or restart of Redis loses the conversations written "
            "since (every one, without snapshots). Run it with appendonly yes and appendfsync everysec."
        )
    if text.get("appendfsync") not in ("everysec", "always"):
        return (
            f"this Redis writes its append-only file with appendfsync {text.get('appendfsync')!r}, so a crash "
            "of the machine can lose more than a second of conversations. Use appendfsync everysec."
        )
    return None
