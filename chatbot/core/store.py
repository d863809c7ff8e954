"""Conversation store for the HTTP API: SQLite by default (:mod:`chatbot.core.sqlite_store`), Redis when
``REDIS_URL`` is set (:mod:`chatbot.core.redis_store`). This module holds what both share: the contract
(:class:`Store`), the records, the context rule, and choosing and checking a backend.

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
messages that have ended (they no longer change) and reads only the newer ones
(:class:`~chatbot.core.ended_rows.EndedRows`).

Every conversation has an owner (a hash of the API token that created it, or ``""`` when the API runs
without tokens); reading, continuing or deleting with another owner is the same as the id not existing.
Stored history is never trimmed; only what is sent upstream is.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal, Protocol

from chatbot.core.leases import expired
from chatbot.core.settings import Settings

log = logging.getLogger("switchboard.store")

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

def has_stale(found: Conversation | list[Message], me: str) -> bool:
    messages = found.messages if isinstance(found, Conversation) else found
    now = time.time()
    return any(m.status == "streaming" and expired(m.holder, m.lease, now, me) for m in messages)


def error_reason(exc: BaseException) -> str:
    """A short, secret-free reason for an OS or database error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def open_store(settings: Settings) -> Store:
    """The store the settings name: Redis when ``REDIS_URL`` is set, else SQLite at ``CHATBOT_DB``.
    Raises :class:`StoreError` when the SQLite file cannot be opened."""
    if settings.redis_url:
        from chatbot.core.redis_store import RedisStore

        return RedisStore(settings.redis_url.get_secret_value())
    from chatbot.core.sqlite_store import SQLiteStore

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
        raise StoreError(f"REDIS_URL: cannot reach Redis ({type(exc).__name__}: {error_reason(exc)})") from None
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
