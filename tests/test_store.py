"""The conversation store, SQLite and a real redis-server alike: turns, owners, races, restarts.

Tests that need Redis start their own ``redis-server`` on a free port (``.ci/run`` installs the binary;
``apt-get install -y redis-server`` does it by hand) and are skipped, saying so, when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import RedisServer, free_port
from pydantic import SecretStr

from chatbot.core.settings import Settings
from chatbot.core.store import (
    EndedRows,
    Message,
    RedisStore,
    SQLiteStore,
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


# ---------------------------------------------------------------------------------------------- SQLite


async def test_sqlite_file_and_folder_are_created_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "switchboard.db"
    first = SQLiteStore(path)
    done = await first.begin_turn(None, OWNER, "kept", "m", 100)
    assert done is not None
    await first.finish_turn(done, "kept too", "complete")
    cut = await first.begin_turn(done.conversation_id, OWNER, "never answered", "m", 100)
    assert cut is not None
    await first.close()  # the process "dies" with a reply streaming

    second = SQLiteStore(path)
    stored = await second.get(done.conversation_id, OWNER)
    assert stored is not None
    assert [(m.content, m.status) for m in stored.messages] == [
        ("kept", "complete"), ("kept too", "complete"), ("never answered", "complete"), ("", "interrupted"),
    ]
    assert stored.messages[-1].error == "restart"
    again = await second.begin_turn(done.conversation_id, OWNER, "back again", "m", 100)
    assert again is not None and again.user_seq == 5
    assert [m["content"] for m in again.history] == ["kept", "kept too"]
    await second.close()


async def test_sqlite_turns_read_the_same_context_as_the_whole_stored_conversation(tmp_path: Path) -> None:
    """Turns answered, failed, cut, still streaming and finished out of order, with a context window that
    slides: each turn's context is what the whole stored conversation gives, though only the messages
    after the ended ones are read back."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    window = 9
    first = await store.begin_turn(None, OWNER, "q0", "m", window)
    assert first is not None
    cid = first.conversation_id
    await store.finish_turn(first, "a0", "complete")
    pending = []
    for i in range(1, 40):
        turn = await store.begin_turn(cid, OWNER, f"q{i}", "m", window)
        assert turn is not None
        stored = await store.get(cid, OWNER)
        assert stored is not None
        earlier = [m for m in stored.messages if turn.user_seq - window <= m.seq < turn.user_seq]
        assert turn.history == context_from(earlier), i
        if i % 7 == 3:
            pending.append(turn)  # left streaming for a while
        else:
            outcome = ("a", "complete") if i % 5 else ("", "interrupted")
            await store.finish_turn(turn, outcome[0] + str(i) if outcome[0] else "", outcome[1])
        if len(pending) > 1:
            await store.finish_turn(pending.pop(0), f"late {i}", "complete")
    assert len(store.ended) == 1
    await store.close()


async def test_sqlite_ended_messages_are_not_read_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    turn = await store.begin_turn(None, OWNER, "question", "m", 100)
    assert turn is not None
    await store.finish_turn(turn, "answer", "complete")
    second = await store.begin_turn(turn.conversation_id, OWNER, "again", "m", 100)
    assert second is not None and [m["content"] for m in second.history] == ["question", "answer"]
    # Changed behind the store's back on its own connection (nothing a store does): still the kept text.
    store._db.execute("UPDATE messages SET content = 'changed' WHERE seq = 2")
    await store.finish_turn(second, "answer 2", "complete")
    third = await store.begin_turn(turn.conversation_id, OWNER, "third", "m", 100)
    assert third is not None
    assert [m["content"] for m in third.history] == ["question", "answer", "again", "answer 2"]
    await store.close()


@pytest.mark.parametrize("finisher", ["continuing process", "other process"])
async def test_sqlite_reply_finished_after_another_process_marked_it_interrupted(
    tmp_path: Path, finisher: str
) -> None:
    """A process opening the file marks replies still streaming as interrupted. When the process that
    was streaming such a reply finishes it after all, the next turn sees its text: in the process that
    had read it as interrupted meanwhile, whether that process finished it or another one did."""
    path = tmp_path / "shared.db"
    first = SQLiteStore(path)
    slow = await first.begin_turn(None, OWNER, "slow question", "m", 100)
    assert slow is not None
    second = SQLiteStore(path)  # the slow reply is now "interrupted", with no text
    reader = first if finisher == "continuing process" else second
    turn = await reader.begin_turn(slow.conversation_id, OWNER, "next", "m", 100)
    assert turn is not None and turn.history == []
    await reader.finish_turn(turn, "next answer", "complete")
    await first.finish_turn(slow, "slow answer", "complete")
    later = await reader.begin_turn(slow.conversation_id, OWNER, "later", "m", 100)
    assert later is not None
    assert [m["content"] for m in later.history] == ["slow question", "slow answer", "next", "next answer"]
    await first.close()
    await second.close()


def test_ended_rows_are_bounded() -> None:
    ended = EndedRows(max_conversations=2, max_chars=100)
    ended.check_version(1)
    rows = [(1, "user", "x" * 10, "complete"), (2, "assistant", "y" * 10, "complete"),
            (3, "user", "z", "complete"), (4, "assistant", "", "streaming"), (5, "user", "w", "complete")]
    ended.keep("a", None, rows)
    assert ended.known("a", 1, 6) == rows[:3]  # up to the reply still streaming
    assert ended.known("a", 2, 6) == rows[1:3]
    known = ended.known("a", 2, 6)
    ended.keep("a", known, [(4, "assistant", "done", "complete"), (5, "user", "w", "complete")])
    assert ended.known("a", 2, 6) == rows[1:3] + [(4, "assistant", "done", "complete"), (5, "user", "w", "complete")]
    assert ended.chars == 10 + 1 + 4 + 1
    assert ended.known("a", 1, 6) is None  # does not reach back far enough
    ended.keep("a", None, rows)
    ended.keep("b", None, rows[:2])
    ended.keep("c", None, rows[:2])
    assert len(ended) == 2 and ended.known("a", 1, 6) is None  # the least recently used went
    ended.keep("d", None, [(1, "user", "q" * 101, "complete")])
    assert ended.known("d", 1, 2) is None and ended.chars == 40
    ended.check_version(2)  # another connection wrote to the file
    assert len(ended) == 0 and ended.chars == 0


async def test_two_sqlite_stores_on_one_file_race_without_loss(tmp_path: Path) -> None:
    """Two processes on one file are two connections: BEGIN IMMEDIATE serialises them."""
    path = tmp_path / "shared.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    first = await a.begin_turn(None, OWNER, "hi", "m", 100)
    assert first is not None
    await a.finish_turn(first, "hello", "complete")

    async def one(store: Store, i: int) -> int:
        turn = await store.begin_turn(first.conversation_id, OWNER, f"q{i}", "m", 100)
        assert turn is not None
        await store.finish_turn(turn, f"a{i}", "complete")
        return turn.user_seq

    seqs = await asyncio.gather(*(one(a if i % 2 else b, i) for i in range(30)))
    assert sorted(seqs) == list(range(3, 63, 2))
    stored = await b.get(first.conversation_id, OWNER)
    assert stored is not None and len(stored.messages) == 62
    await a.close()
    await b.close()


async def test_sqlite_work_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While the database is busy (its lock held by another thread), other coroutines keep running."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    pending = asyncio.ensure_future(store.begin_turn(None, OWNER, "waits", "m", 100))
    ticks = 0
    for _ in range(20):  # the loop turns while the store call waits for the lock
        await asyncio.sleep(0)
        ticks += 1
    assert not pending.done() and ticks == 20
    release.set()
    turn = await asyncio.wait_for(pending, 10)
    assert turn is not None
    holder.join(10)
    assert not holder.is_alive()
    await store.close()


def test_unwritable_database_path_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as caught:
        SQLiteStore(blocker / "switchboard.db")
    assert "CHATBOT_DB" in str(caught.value) and str(blocker) in str(caught.value)


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


# ----------------------------------------------------------------------------------------------- Redis


def test_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    url = f"redis://:hunter2-very-secret@127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=SecretStr(url))
    with pytest.raises(StoreError) as caught:
        check_redis(settings, timeout=2)
    assert "REDIS_URL" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(settings)


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


def test_redis_url_setting_is_validated_and_secret() -> None:
    environ = {"REDIS_URL": "redis://:pw-secret@localhost:6379/0"}
    settings = Settings.load([], environ=environ, env_file=None)
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == environ["REDIS_URL"]
    assert "pw-secret" not in repr(settings)
    from chatbot.core.settings import ConfigError

    with pytest.raises(ConfigError) as caught:
        Settings.load([], environ={"REDIS_URL": "http://:pw-secret@host"}, env_file=None)
    assert "REDIS_URL" in str(caught.value) and "pw-secret" not in str(caught.value)


# -------------------------------------------------------------------------- partial saves and leases


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
    import chatbot.core.store as store_module

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
    import chatbot.core.store as store_module

    monkeypatch.setattr(store_module, "LEASE_SECONDS", -1.0)
    with held_elsewhere(store):
        lost = await store.begin_turn(None, OWNER, "question", "m", 100)
        assert lost is not None
        await store.save_partials([(lost, "what was seen")])
    turn = await store.begin_turn(lost.conversation_id, OWNER, "next", "m", 100)
    assert turn is not None
    assert [m["content"] for m in turn.history] == ["question", "what was seen"]


def test_a_sqlite_file_from_before_leases_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE conversations (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL, next_seq INTEGER NOT NULL DEFAULT 1);"
        "CREATE TABLE messages (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, role TEXT NOT NULL, "
        "content TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, model TEXT, error TEXT, "
        "finish_reason TEXT, usage TEXT, PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID;"
        f"INSERT INTO conversations VALUES ('{'a' * 32}', 'o', 1, 1, 3);"
        f"INSERT INTO messages VALUES ('{'a' * 32}', 1, 'user', 'q', 'complete', 1, 'm', NULL, NULL, NULL);"
        f"INSERT INTO messages VALUES ('{'a' * 32}', 2, 'assistant', 'par', 'streaming', 1, 'm', NULL, NULL, NULL);"
    )
    db.commit()
    db.close()

    async def check() -> None:
        store = SQLiteStore(path)
        stored = await store.get("a" * 32, "o")
        assert stored is not None
        assert [(m.content, m.status, m.error) for m in stored.messages] == [
            ("q", "complete", None), ("par", "interrupted", "restart"),
        ]
        await store.close()

    asyncio.run(check())


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
