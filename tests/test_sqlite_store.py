"""What only the SQLite store does: its file and folder, restarts, several processes on one file, the
event loop kept free, reading back only the messages that have not ended, old files upgraded."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from chatbot.core.sqlite_store import SQLiteStore
from chatbot.core.store import Store, StoreError, context_from

OWNER = "owner-a"


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
