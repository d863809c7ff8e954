"""Closed browser sessions leave Gradio's state holder and queue (chatbot/web/sessions.py): against a real
StateHolder, then in the app launched for real, with tabs played over raw HTTP (heartbeat + queue)."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
import httpx
import pytest
from conftest import make_settings, wait_until
from fake_upstream import Behaviour, FakeUpstream

import app as switchboard
from chatbot.web.sessions import DEFAULT_GRACE, SessionReaper

T0 = datetime.datetime(2030, 1, 1, 12, 0, 0)


def later(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


# --------------------------------------------------------------------------- reap() on a real StateHolder


@pytest.fixture
def blocks() -> gr.Blocks:
    """A small Blocks with a State (whose delete_callback records values), queue configured, not launched:
    ``queue()`` creates its App and so its real StateHolder."""
    deleted: list[Any] = []
    with gr.Blocks() as demo:
        state = gr.State(0, delete_callback=deleted.append)
        box = gr.Textbox()
        box.submit(lambda s: s, state, state)
    demo.queue()
    demo.test_state = state  # type: ignore[attr-defined]
    demo.test_deleted = deleted  # type: ignore[attr-defined]
    return demo


def session(blocks: gr.Blocks, sid: str, *, closed: bool, used: datetime.datetime = T0, value: Any = 1) -> None:
    """A session as Gradio leaves it: state in the holder (a State value set), last used at ``used``, the
    queue's message queue and (finished) event-id set and one analytics record."""
    holder = blocks.state_holder
    holder[sid][blocks.test_state._id] = value  # type: ignore[attr-defined]
    holder.time_last_used[sid] = used
    holder.session_data[sid].is_closed = closed
    queue = blocks._queue
    queue.pending_messages_per_session[sid] = asyncio.Queue()
    queue.pending_event_ids_session[sid] = set()
    queue.event_analytics[f"event-{sid}"] = {"time": 0.0, "status": "success", "process_time": 0.1,
                                             "function": "chat", "session_hash": sid}


def held(blocks: gr.Blocks) -> set[str]:
    return set(blocks.state_holder.session_data)


def test_closed_sessions_go_after_the_grace_open_ones_stay(blocks: gr.Blocks) -> None:
    reaper = SessionReaper(blocks, grace=10)
    session(blocks, "open", closed=False)
    session(blocks, "closed", closed=True, value="closed-value")
    assert reaper.reap(T0) == 0  # first seen closed now: 10 s from now
    assert reaper.reap(later(9.9)) == 0 and held(blocks) == {"open", "closed"}
    assert reaper.reap(later(10)) == 1
    assert held(blocks) == {"open"} and "closed" not in blocks.state_holder.time_last_used
    assert blocks.test_deleted == ["closed-value"]  # type: ignore[attr-defined]  # the State's delete_callback
    assert reaper.reap(later(10_000)) == 0 and held(blocks) == {"open"}  # never an open one


def test_the_grace_runs_from_the_later_of_closing_and_last_use(blocks: gr.Blocks) -> None:
    reaper = SessionReaper(blocks, grace=10)
    session(blocks, "idle-then-closed", closed=True, used=later(-3_600))  # idle an hour, closed just now
    session(blocks, "used-after-closing", closed=True, used=T0)
    assert reaper.reap(T0) == 0 and reaper.reap(later(9)) == 0
    blocks.state_holder.time_last_used["used-after-closing"] = later(8)  # e.g. a heartbeat that came back
    assert reaper.reap(later(10)) == 1 and held(blocks) == {"used-after-closing"}
    assert reaper.reap(later(17.9)) == 0
    assert reaper.reap(later(18)) == 1 and held(blocks) == set()


@pytest.mark.parametrize("where", ["event", "queued", "running"])
def test_a_session_with_an_event_queued_or_running_stays(blocks: gr.Blocks, where: str) -> None:
    reaper = SessionReaper(blocks, grace=0)
    session(blocks, "busy", closed=True)
    session(blocks, "idle", closed=True)
    queue = blocks._queue
    event = SimpleNamespace(session_hash="busy", _id="event-1")
    queue.pending_event_ids_session["busy"] = {"event-1"}
    queue.event_analytics["event-1"] = {"status": "processing", "session_hash": "busy"}
    if where == "event":  # joined, not yet taken by a worker
        queue.event_ids_to_events["event-1"] = event
    elif where == "queued":
        queue.event_queue_per_concurrency_id["c"] = SimpleNamespace(queue=[event])
    else:
        queue.active_jobs = [None, [event]]
    assert reaper.reap(later(3_600)) == 1 and held(blocks) == {"busy"}
    assert "busy" in queue.pending_messages_per_session and queue.pending_event_ids_session["busy"] == {"event-1"}
    assert "event-1" in queue.event_analytics

    queue.event_ids_to_events.clear()  # the event ends
    queue.event_queue_per_concurrency_id.clear()
    queue.active_jobs = [None, None]
    queue.event_analytics["event-1"]["status"] = "success"
    assert reaper.reap(later(3_601)) == 1 and held(blocks) == set()
    assert "busy" not in queue.pending_messages_per_session and "busy" not in queue.pending_event_ids_session
    assert "event-1" not in queue.event_analytics


def test_queue_leftovers_go_with_the_session_and_only_then(blocks: gr.Blocks) -> None:
    reaper = SessionReaper(blocks, grace=0)
    session(blocks, "open", closed=False)
    session(blocks, "closed", closed=True)
    queue = blocks._queue
    # A session Gradio's own LRU evicted: its leftovers stay in the queue (Gradio never drops the id set).
    queue.pending_event_ids_session["evicted"] = set()
    # One whose stream has a message still to read: kept until it is read.
    queue.pending_messages_per_session["unread"] = unread = asyncio.Queue()
    unread.put_nowait("process_completed")
    queue.pending_event_ids_session["unread"] = {"event-u"}
    assert reaper.reap(T0) == 1
    assert set(queue.pending_messages_per_session) == {"open", "unread"}
    assert set(queue.pending_event_ids_session) == {"open", "unread"}
    assert [a["session_hash"] for a in queue.event_analytics.values()] == ["open"]
    unread.get_nowait()
    reaper.reap(later(1))
    assert set(queue.pending_messages_per_session) == set(queue.pending_event_ids_session) == {"open"}


def test_nothing_to_do_before_the_app_exists_and_bad_values() -> None:
    assert SessionReaper(SimpleNamespace(), grace=0).reap() == 0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SessionReaper(SimpleNamespace(), grace=-1)  # type: ignore[arg-type]
    assert SessionReaper(SimpleNamespace()).grace == DEFAULT_GRACE == 600  # type: ignore[arg-type]
    assert SessionReaper(SimpleNamespace(), grace=float("inf")).reap() == 0  # type: ignore[arg-type]


async def test_the_lifespan_runs_the_loop_and_stops_it(blocks: gr.Blocks) -> None:
    reaper = SessionReaper(blocks, grace=0)
    session(blocks, "closed", closed=True, used=datetime.datetime.now() - datetime.timedelta(seconds=1))
    async with reaper.lifespan(None):
        assert reaper.running
        task = reaper.start()
        assert reaper.start() is task  # started once
        for _ in range(500):
            if "closed" not in held(blocks):
                break
            await asyncio.sleep(0.01)
        assert held(blocks) == set()
    assert task.done() and not reaper.running


async def test_a_failing_pass_does_not_stop_the_loop(blocks: gr.Blocks, monkeypatch: pytest.MonkeyPatch) -> None:
    reaper = SessionReaper(blocks, grace=0)
    calls: list[int] = []

    def flaky(now: datetime.datetime | None = None) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first pass fails")
        return 0

    monkeypatch.setattr(reaper, "reap", flaky)
    reaper.start(0.01)
    try:
        for _ in range(500):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(calls) >= 3 and reaper.running
    finally:
        await reaper.stop()


def test_the_grace_setting() -> None:
    assert make_settings(None).session_grace == 600.0
    assert make_settings(None, CHATBOT_SESSION_GRACE="2.5").session_grace == 2.5
    assert make_settings(None, CHATBOT_SESSION_GRACE="0").session_grace == 0.0
    from chatbot.core.settings import ConfigError

    for bad in ("-1", "soon"):
        with pytest.raises(ConfigError, match="^CHATBOT_SESSION_GRACE"):
            make_settings(None, CHATBOT_SESSION_GRACE=bad)


# --------------------------------------------------------------------------- the app, launched for real


class Tab:
    """A browser tab of ``url``: its heartbeat stream held open on a raw socket (closing the socket is
    the tab closing), and chats through Gradio's queue with the tab's session hash."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sid = uuid.uuid4().hex[:12]
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.sock.sendall(f"GET /gradio_api/heartbeat/{self.sid} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        seen = b""
        while b"ALIVE" not in seen:
            chunk = self.sock.recv(4096)
            assert chunk, "the heartbeat stream ended"
            seen += chunk

    def close(self) -> None:
        self.sock.close()

    def join(self, client: httpx.Client, message: str) -> None:
        config = client.get(f"{self.url}config").json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
        response = client.post(f"{self.url}gradio_api/queue/join", json={
            "data": [message, "fast", [], ""], "fn_index": fn_index, "session_hash": self.sid,
            "event_data": None, "trigger_id": None,
        })
        response.raise_for_status()

    def messages(self, client: httpx.Client) -> Iterator[dict]:
        """The session's queue stream, message by message (ends with process_completed)."""
        with client.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": self.sid}) as sse:
            for line in sse.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    yield message
                    if message.get("msg") == "process_completed":
                        return

    def chat(self, client: httpx.Client, message: str) -> str:
        self.join(client, message)
        return reply_of(list(self.messages(client))[-1])


def reply_of(completed: dict) -> str:
    assert completed["msg"] == "process_completed" and completed["success"], completed
    return completed["output"]["data"][0]


@pytest.fixture
def launched(fake: FakeUpstream) -> Iterator[gr.Blocks]:
    """The app as ``switchboard.launch`` serves it, closed sessions dropped at once (grace 0)."""
    settings = make_settings(fake.base_url, CHATBOT_SESSION_GRACE="0")
    demo = switchboard.build(settings)
    port = free_port()
    switchboard.launch(demo, settings, server_port=port, prevent_thread_lock=True, quiet=True)
    yield demo
    demo.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_tabs_go_open_ones_and_running_events_stay(launched: gr.Blocks, fake: FakeUpstream) -> None:
    demo, url = launched, launched.local_url
    holder, queue = demo.state_holder, demo._queue
    with httpx.Client(timeout=30) as client:
        stays_open, marker, running = Tab(url), Tab(url), Tab(url)
        assert stays_open.chat(client, "first").startswith("Hello from gpt-4.1-mini")
        assert marker.chat(client, "hi").startswith("Hello from")
        open_state = holder.session_data[stays_open.sid]

        # A reply that takes ~5 s: the tab closes while it streams, its queue stream still open.
        long_reply = "r" * 200
        fake.push(Behaviour(reply=long_reply, chunk_size=2, delay=0.05))
        running.join(client, "a long one")
        stream = running.messages(client)
        while next(stream)["msg"] != "process_generating":
            pass
        upstream_call = fake.last
        running.close()
        wait_until(lambda: holder.session_data[running.sid].is_closed, what="the running tab marked closed")

        # The marker closes after it, so the pass that drops the marker has seen the running tab closed too.
        marker.close()
        wait_until(lambda: marker.sid not in holder.session_data, what="the closed idle tab dropped")
        assert upstream_call.finished_at is None, "the reply ended before the check: the test proves nothing"
        assert running.sid in holder.session_data  # kept while its event runs
        assert holder.session_data[stays_open.sid] is open_state  # an open tab is never dropped

        rest = list(stream)  # and the running event finishes normally
        assert reply_of(rest[-1]) == long_reply
        wait_until(lambda: running.sid not in holder.session_data, what="the running tab dropped once finished")
        wait_until(lambda: not {marker.sid, running.sid} & (set(queue.pending_messages_per_session)
                                                             | set(queue.pending_event_ids_session)),
                   what="the queue's leftovers of the closed tabs dropped")
        assert not any(a.get("session_hash") in (marker.sid, running.sid) for a in queue.event_analytics.values())

        # The open tab keeps its state and keeps chatting.
        assert stays_open.chat(client, "second").startswith("Hello from gpt-4.1-mini")
        assert holder.session_data[stays_open.sid] is open_state
        assert fake.last.body["messages"][-1]["content"] == "second"
        stays_open.close()


def test_build_server_drops_closed_tabs_and_stops_cleanly(fake: FakeUpstream, tmp_path) -> None:
    settings = make_settings(fake.base_url, CHATBOT_SESSION_GRACE="0", CHATBOT_DB=str(tmp_path / "db.sqlite"))
    app = switchboard.build_server(settings)
    running = switchboard.serve_in_thread(app)
    demo = app.routes[-1].app.get_blocks()
    try:
        with httpx.Client(timeout=30) as client:
            tab, other = Tab(running.url), Tab(running.url)
            assert tab.chat(client, "hi").startswith("Hello from")
            assert other.chat(client, "hi").startswith("Hello from")
            tab.close()
            wait_until(lambda: tab.sid not in demo.state_holder.session_data, what="the closed tab dropped")
            assert other.sid in demo.state_holder.session_data
            other.close()
    finally:
        running.stop()
    assert not running.thread.is_alive()  # the lifespan (and the loop with it) ended
