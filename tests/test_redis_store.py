"""What only the Redis store does: a server down mid-way, two clients (two app processes) on one
conversation. Tests start their own ``redis-server`` (conftest.RedisServer) and are skipped, saying so,
when it is missing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from conftest import RedisServer, free_port

from chatbot.core.redis_store import RedisStore
from chatbot.core.store import StoreError

OWNER = "owner-a"


async def test_redis_down_mid_way_is_a_store_error_not_a_crash() -> None:
    url = f"redis://:hunter2-very-secret@127.0.0.1:{free_port()}/0"
    store = RedisStore(url)
    with pytest.raises(StoreError) as caught:
        await store.begin_turn(None, OWNER, "hi", "m", 100)
    assert "hunter2" not in str(caught.value)
    await store.close()


async def test_two_redis_clients_race_on_one_conversation(redis_server: RedisServer) -> None:
    """Two app processes are two clients: every change is one Lua script, so nothing is lost."""
    prefix = f"race-{uuid.uuid4().hex}:"
    a, b = RedisStore(redis_server.url, prefix), RedisStore(redis_server.url, prefix)
    first = await a.begin_turn(None, OWNER, "hi", "m", 100)
    assert first is not None
    await a.finish_turn(first, "hello", "complete")

    async def one(store: RedisStore, i: int) -> None:
        turn = await store.begin_turn(first.conversation_id, OWNER, f"q{i}", "m", 100)
        assert turn is not None
        await store.finish_turn(turn, f"a{i}", "complete")

    await asyncio.gather(*(one(a if i % 2 else b, i) for i in range(50)))
    stored = await b.get(first.conversation_id, OWNER)
    assert stored is not None
    assert [m.seq for m in stored.messages] == list(range(1, 103))
    pairs = zip(stored.messages[2::2], stored.messages[3::2], strict=True)
    assert all(u.role == "user" and m.content == "a" + u.content[1:] for u, m in pairs)
    await a.close()
    await b.close()
