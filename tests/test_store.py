"""The conversation store's contract, on SQLite and a real redis-server alike: turns, owners, races,
leases; the context rule; choosing and checking a backend. What only one backend does is in
test_sqlite_store.py, test_ended_rows.py and test_redis_store.py.

Tests that need Redis start their own ``redis-server`` on a free port (``.ci/run`` installs the binary;
``apt-get install -y redis-server`` does it by hand) and are skipped, saying so, when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import RedisServer, free_port
from pydantic import SecretStr

from chatbot.core.redis_store import RedisStore
from chatbot.core.settings import Settings
from chatbot.core.sqlite_store import SQLiteStore
from chatbot.core.store import (
    Message,
    Store,
    StoreError,
    check_redis,
    context_from,
    open_store,
    valid_id,
)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store backend, empty."""
    if request.param == "sqlite":
        made: Store = SQLiteStore(tmp_path / "conversations.db")
    else:
        server = request.getfixturevalue("redis_server")
        made = RedisStore(server.url, key_prefix=f"test-{uuid.uuid4().hex}:")
    yield made
    await made.close()


OWNER = "owner-a"


@contextlib.contextmanager
def held_elsewhere(store: Store) -> Iterator[None]:
    """Inside: the store writes as a process of another machine would (another lease holder)."""
    mine = store.holder  # type: ignore[attr-defined]
    store.holder = "elsewhere.example:4242:abcdef12"  # type: ignore[attr-defined]
    try:
        yield
    finally:
        store.holder = mine  # type: ignore[attr-defined]


async def test_first_turn_creates_a_conversation_and_stores_both_messages(store: Store) -> None:
    turn = await store.begin_turn(None, OWNER, "Hello", "gpt-4.1-mini", 100)
    assert turn is not None and turn.created and valid_id(turn.conversation_id)
    assert (turn.user_seq, turn.reply_seq, turn.history) == (1, 2, [])
    stored = await store.get(turn.conversation_id, OWNER)
    assert stored is not None
    assert [(m.role, m.content, m.status) for m in stored.messages] == [
        ("user", "Hello", "complete"),
        ("assistant", "", "streaming"),  # the message is stored before any reply arrives
    ]
    assert await store.finish_turn(turn, "Hi!", "complete", finish_reason="stop", usage={"prompt_tokens": 3})
    stored = await store.get(turn.conversation_id, OWNER)
    assert stored is not None
    reply = stored.messages[1]
    assert (reply.content, reply.status, reply.finish_reason) == ("Hi!", "complete", "stop")
    assert reply.model == "gpt-4.1-mini"
    assert reply.usage == {"prompt_tokens": 3}
    assert stored.updated_at >= stored.created_at


async def test_next_turn_sees_the_ended_turns_as_context(store: Store) -> None:
    first = await store.begin_turn(None, OWNER, "one", "m", 100)
    assert first is not None
    await store.finish_turn(first, "reply one", "complete")
    second = await store.begin_turn(first.conversation_id, OWNER, "two", "m", 100)
    assert second is not None and not second.created
    assert second.history == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "reply one"}
    ]
    assert (second.user_seq, second.reply_seq) == (3, 4)


async def test_context_is_bounded_but_stored_history_is_not(store: Store) -> None:
    turn = await store.begin_turn(None, OWNER, "q0", "m", 100)
    assert turn is not None
    cid = turn.conversation_id
    await store.finish_turn(turn, "a0", "complete")
    for i in range(1, 6):
        turn = await store.begin_turn(cid, OWNER, f"q{i}", "m", 4)
        assert turn is not None
        await store.finish_turn(turn, f"a{i}", "complete")
    assert [m["content"] for m in turn.history] == ["q3", "a3", "q4", "a4"]  # only the last 4 read back
    stored = await store.get(cid, OWNER)
    assert stored is not None and len(stored.messages) == 12


async def test_unknown_foreign_and_malformed_ids_are_all_none(store: Store) -> None:
    turn = await store.begin_turn(None, OWNER, "mine", "m", 100)
    assert turn is not None
    cid = turn.conversation_id
    assert await store.begin_turn(cid, "owner-b", "let me in", "m", 100) is None
    assert await store.get(cid, "owner-b") is None
    assert await store.delete(cid, "owner-b") is False
    for bad in (uuid.uuid4().hex, "../../etc/passwd", "", "x" * 5000, cid.upper(), cid + "\x00"):
        assert await store.begin_turn(bad, OWNER, "hi", "m", 100) is None
        assert await store.get(bad, OWNER) is None
        assert await store.delete(bad, OWNER) is False
    stored = await store.get(cid, OWNER)
    assert stored is not None and [m.content for m in stored.messages] == ["mine", ""]  # untouched


async def test_delete_removes_everything_and_a_late_reply_does_not_resurrect_it(store: Store) -> None:
    turn = await store.begin_turn(None, OWNER, "hi", "m", 100)
    assert turn is not None
    assert await store.delete(turn.conversation_id, OWNER)
    assert await store.get(turn.conversation_id, OWNER) is None
    assert await store.finish_turn(turn, "too late", "complete") is False
    assert await store.get(turn.conversation_id, OWNER) is None
    assert await store.delete(turn.conversation_id, OWNER) is False


async def test_interrupted_reply_keeps_its_text_and_reason(store: Store) -> None:
    turn = await store.begin_turn(None, OWNER, "tell me", "m", 100)
    assert turn is not None
    await store.finish_turn(turn, "Once upon a", "interrupted", error="disconnected")
    stored = await store.get(turn.conversation_id, OWNER)
    assert stored is not None
    reply = stored.messages[1]
    assert (reply.content, reply.status, reply.error) == ("Once upon a", "interrupted", "disconnected")


async def test_text_round_trips_exactly(store: Store) -> None:
    text = "line 1\n\n  indented\ttab\r\nCRLF 🙂 ünïcödé \\ \" ' {\"json\": [1]} \u2028 end\n"
    turn = await store.begin_turn(None, OWNER, text, "model/with:odd@chars", 100)
    assert turn is not None
    await store.finish_turn(turn, text[::-1], "complete")
    again = await store.begin_turn(turn.conversation_id, OWNER, "next", "m", 100)
    assert again is not None
    assert again.history == [{"role": "user", "content": text}, {"role": "assistant", "content": text[::-1]}]


async def test_racing_turns_never_lose_or_interleave_messages(store: Store) -> None:
    first = await store.begin_turn(None, OWNER, "start", "m", 1000)
    assert first is not None
    cid = first.conversation_id
    await store.finish_turn(first, "started", "complete")

    async def one(i: int) -> None:
        turn = await store.begin_turn(cid, OWNER, f"question {i}", "m", 1000)
        assert turn is not None and turn.reply_seq == turn.user_seq + 1
        await asyncio.sleep(0)
        await store.finish_turn(turn, f"answer {i}", "complete")

    await asyncio.gather(*(one(i) for i in range(40)))
    stored = await store.get(cid, OWNER)
    assert stored is not None
    assert [m.seq for m in stored.messages] == list(range(1, 83))
    pairs = list(zip(stored.messages[::2], stored.messages[1::2], strict=True))
    assert all(u.role == "user" and a.role == "assistant" for u, a in pairs)
    expected = {(f"question {i}", f"answer {i}") for i in range(40)}
    assert {(u.content, a.content) for u, a in pairs[1:]} == expected
    assert all(a.content == "answer " + u.content.split()[-1] for u, a in pairs[1:])


async def test_a_turn_still_streaming_is_not_context_for_another(store: Store) -> None:
    first = await store.begin_turn(None, OWNER, "slow question", "m", 100)
    assert first is not None
    second = await store.begin_turn(first.conversation_id, OWNER, "quick question", "m", 100)
    assert second is not None and second.history == []
    await store.finish_turn(second, "quick answer", "complete")
    await store.finish_turn(first, "slow answer", "complete")
    third = await store.begin_turn(first.conversation_id, OWNER, "third", "m", 100)
    assert third is not None
    assert [m["content"] for m in third.history] == [
        "slow question", "slow answer", "quick question", "quick answer"
    ]


def test_context_leaves_out_unanswered_and_unfinished_turns() -> None:
    def msg(seq: int, role: str, content: str, status: str = "complete") -> Message:
        return Message(seq, role, content, status, 0.0)  # type: ignore[arg-type]

    messages = [
        msg(1, "user", "answered"), msg(2, "assistant", "yes"),
        msg(3, "user", "failed before any text"), msg(4, "assistant", "", "interrupted"),
        msg(5, "user", "cut midway"), msg(6, "assistant", "partial", "interrupted"),
        msg(7, "user", "in progress"), msg(8, "assistant", "", "streaming"),
    ]
    assert context_from(messages) == [
        {"role": "user", "content": "answered"}, {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "cut midway"}, {"role": "assistant", "content": "partial"},
    ]


def test_open_store_follows_the_settings(tmp_path: Path) -> None:
    sqlite = open_store(Settings(db_path=str(tmp_path / "x.db")))
    assert isinstance(sqlite, SQLiteStore) and (tmp_path / "x.db").exists()
    asyncio.run(sqlite.close())
    redis = open_store(Settings(redis_url=SecretStr("redis://127.0.0.1:1/0")))
    assert isinstance(redis, RedisStore)
    asyncio.run(redis.close())


def test_default_database_is_under_data() -> None:
    assert Path(Settings().db_path).parts[0] == "data"
    settings = Settings.load([], environ={"CHATBOT_DB": "/tmp/elsewhere.db"}, env_file=None)
    assert settings.db_path == "/tmp/elsewhere.db"


def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    url = f"redis://:hunter2-very-secret@127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=SecretStr(url))
    with pytest.raises(StoreError) as caught:
        check_redis(settings, timeout=2)
    assert "REDIS_URL" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(settings)


def test_redis_url_setting_is_validated_and_secret() -> None:
    environ = {"REDIS_URL": "redis://:pw-secret@localhost:6379/0"}
    settings = Settings.load([], environ=environ, env_file=None)
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == environ["REDIS_URL"]
    assert "pw-secret" not in repr(settings)
    from chatbot.core.settings import ConfigError

    with pytest.raises(ConfigError) as caught:
        Settings.load([], environ={"REDIS_URL": "http://:pw-secret@host"}, env_file=None)
    assert "REDIS_URL" in str(caught.value) and "pw-secret" not in str(caught.value)


async def test_partial_saves_keep_the_text_so_far_and_never_touch_an_ended_reply(store: Store) -> None:
    first = await store.begin_turn(None, OWNER, "one", "m", 100)
    assert first is not None
    second = await store.begin_turn(first.conversation_id, OWNER, "two", "m", 100)
    assert second is not None
    await store.save_partials([(first, "Once upon"), (second, "Tw")])
    await store.finish_turn(second, "Two, done", "complete")
    await store.save_partials([(first, "Once upon a time"), (second, "Tw")])  # second has ended
    stored = await store.get(first.conversation_id, OWNER)
    assert stored is not None
    assert [(m.content, m.status) for m in stored.messages[1::2]] == [
        ("Once upon a time", "streaming"), ("Two, done", "complete"),
    ]


async def test_a_reply_whose_lease_ran_out_is_interrupted_keeping_its_text(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply streamed by a process of another machine: live while its lease runs, then any reader (a
    GET, the conversation's next turn) marks it interrupted with the text saved so far."""
    store_module = sys.modules[type(store).__module__]

    with held_elsewhere(store):
        turn = await store.begin_turn(None, OWNER, "question", "m", 100)
        assert turn is not None
        await store.save_partials([(turn, "half an answer")])
    stored = await store.get(turn.conversation_id, OWNER)
    assert stored is not None and stored.messages[1].status == "streaming"  # the lease still runs
    following = await store.begin_turn(turn.conversation_id, OWNER, "next", "m", 100)
    assert following is not None and following.history == []

    monkeypatch.setattr(store_module, "LEASE_SECONDS", -1.0)  # leases written from now on have run out
    with held_elsewhere(store):
        await store.save_partials([(turn, "half an answer, and more")])
    stored = await store.get(turn.conversation_id, OWNER)
    assert stored is not None
    reply = stored.messages[1]
    assert (reply.content, reply.status, reply.error) == ("half an answer, and more", "interrupted", "lease_expired")
    await store.finish_turn(following, "answer", "complete")
    third = await store.begin_turn(turn.conversation_id, OWNER, "third", "m", 100)
    assert third is not None
    assert [m["content"] for m in third.history] == ["question", "half an answer, and more", "next", "answer"]


async def test_a_turn_marks_a_lost_reply_of_its_conversation_interrupted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_module = sys.modules[type(store).__module__]

    monkeypatch.setattr(store_module, "LEASE_SECONDS", -1.0)
    with held_elsewhere(store):
        lost = await store.begin_turn(None, OWNER, "question", "m", 100)
        assert lost is not None
        await store.save_partials([(lost, "what was seen")])
    turn = await store.begin_turn(lost.conversation_id, OWNER, "next", "m", 100)
    assert turn is not None
    assert [m["content"] for m in turn.history] == ["question", "what was seen"]


def test_redis_without_aof_gets_a_warning_at_start(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    servers = {
        "default": RedisServer(),
        "snapshots": RedisServer("--save", "3600 1", "--dir", str(tmp_path)),
        "aof no fsync": RedisServer("--appendonly", "yes", "--appendfsync", "no", "--dir", str(tmp_path)),
        "aof": RedisServer("--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(tmp_path)),
        "no CONFIG": RedisServer("--rename-command", "CONFIG", '""'),
    }
    warnings: dict[str, str] = {}
    try:
        for name, server in servers.items():
            caplog.clear()
            settings = Settings(redis_url=SecretStr(server.url))
            with caplog.at_level("WARNING", logger="switchboard.store"):
                check_redis(settings, timeout=5)
            warnings[name] = " ".join(r.getMessage() for r in caplog.records)
    finally:
        for server in servers.values():
            server.stop()
    assert "no persistence" in warnings["default"] and "appendonly yes" in warnings["default"]
    assert "only snapshots" in warnings["snapshots"]
    assert "appendfsync 'no'" in warnings["aof no fsync"]
    assert warnings["aof"] == ""
    assert "CONFIG is disabled" in warnings["no CONFIG"]
