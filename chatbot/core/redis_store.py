"""The conversation store in Redis (when ``REDIS_URL`` is set; :mod:`chatbot.core.store` has the contract).

Every change is one Lua script, so it is atomic across the app processes that share the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from typing import Any

from chatbot.core.leases import LEASE_SECONDS, expired, new_holder
from chatbot.core.store import (
    Conversation,
    Message,
    Status,
    StoreError,
    Turn,
    context_from,
    error_reason,
    has_stale,
    new_conversation_id,
    valid_id,
)

log = logging.getLogger("switchboard.store")

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
            raise StoreError(f"the conversation store (Redis) is unreachable ({error_reason(exc)})") from None

    async def ping(self) -> None:
        from redis.exceptions import RedisError

        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"REDIS_URL: cannot reach Redis ({type(exc).__name__}: {error_reason(exc)})") from None

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
        if not has_stale(messages, self.holder):
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
            raise StoreError(f"the conversation store (Redis) is unreachable ({error_reason(exc)})") from exc

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
