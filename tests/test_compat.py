"""chatbot/compat.py: one test per use of Gradio's or the SDK's internals, so an upgrade that moves one
fails here."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import openai
import pytest
from fake_upstream import Behaviour, FakeUpstream
from fastapi import FastAPI
from gradio import processing_utils, queueing, route_utils
from gradio.context import LocalContext
from gradio.exceptions import InvalidPathError
from gradio.utils import MatplotlibBackendMananger, get_upload_folder

import app as switchboard
from chatbot.compat import (
    ShortWaitClient,
    busy_sessions,
    cache_component_signatures,
    drop_queue_leftovers,
    drop_sessions,
    enforce_path_checks,
    gradio_closer,
    held_sessions,
    limit_queue_threads,
    name_unnamed_controls,
    quiet_event_failures,
    upload_folder,
    uploaded_by_gradio,
    warm_up_gradio,
)


def _shout(text: str) -> str:
    if text == "raise":
        raise gr.Error(f"Value: {text} is not in the list of choices")  # as gr.Dropdown's preprocess does
    return text.upper()


def _blocks() -> gr.Blocks:
    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        box.submit(_shout, box, out, api_name="shout")
    return demo


def test_enforce_path_checks_makes_gradio_refuse_paths_outside_its_upload_folder(tmp_path: Path) -> None:
    """Blocks.has_launched gates processing_utils._check_allowed (a mounted app never sets it)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    demo = _blocks()
    token = LocalContext.blocks.set(demo)
    try:
        processing_utils._check_allowed(str(secret), True)  # unchecked: what the mounted app did
        enforce_path_checks(demo)
        with pytest.raises(InvalidPathError):
            processing_utils._check_allowed(str(secret), True)
        with pytest.raises(InvalidPathError):
            processing_utils._check_allowed("/etc/passwd", True)
        processing_utils._check_allowed(str(Path(get_upload_folder()) / "x" / "upload.txt"), True)
    finally:
        LocalContext.blocks.reset(token)


async def test_quiet_event_failures_turns_any_failure_into_an_error_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Blocks.process_api is what the queue and /run/predict call for every event."""
    demo = quiet_event_failures(_blocks(), lambda request: "Reload the page.")
    block_fn = demo.fns[0]
    caplog.set_level(logging.INFO)
    for inputs in ([], [None], ["raise"]):  # wrong arity; a value the function cannot take; Gradio's own gr.Error
        caplog.clear()
        with pytest.raises(gr.Error) as failed:
            await demo.process_api(block_fn=block_fn, inputs=inputs, state=None, request=None)
        assert failed.value.message == "Reload the page." and failed.value.print_exception is False
        assert len(caplog.records) == 1 and "shout" in caplog.text and not caplog.records[0].exc_info
    result = await demo.process_api(block_fn=block_fn, inputs=["hi"], state=None, request=None)
    assert result["data"] == ["HI"]


def test_upload_folder_is_where_gradios_upload_route_writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """gradio.utils.get_upload_folder: GRADIO_TEMP_DIR, the folder an App writes uploads into."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    assert upload_folder() == str(tmp_path)
    demo = _blocks()
    demo.queue()
    server = switchboard.serve_in_thread(gr.mount_gradio_app(FastAPI(), demo, path="/"))
    try:
        answer = httpx.post(f"{server.url}gradio_api/upload", files=[("files", ("a.txt", b"x"))], timeout=30)
        answer.raise_for_status()
    finally:
        server.stop()
    assert Path(answer.json()[0]).resolve().is_relative_to(Path(upload_folder()).resolve())


def test_uploaded_by_gradio_knows_the_files_its_upload_route_wrote() -> None:
    """Blocks.upload_file_set is Gradio's record of what POST /gradio_api/upload wrote."""
    demo = _blocks()
    demo.queue()
    uploaded = uploaded_by_gradio(demo)
    app = gr.mount_gradio_app(FastAPI(), demo, path="/")
    server = switchboard.serve_in_thread(app)
    try:
        answer = httpx.post(f"{server.url}gradio_api/upload", files=[("files", ("a.txt", secrets.token_bytes(16)))],
                            timeout=30)
        answer.raise_for_status()
        path = answer.json()[0]
    finally:
        server.stop()
    planted = Path(get_upload_folder()) / secrets.token_hex(16) / "a.txt"
    assert uploaded(path) and Path(path).is_file()
    assert not uploaded(str(planted)) and not uploaded("/etc/passwd")


def test_limit_queue_threads_sizes_the_queue_that_queue_builds() -> None:
    """Blocks.max_threads is what Blocks.queue() sizes the queue's worker slots from."""
    demo = limit_queue_threads(_blocks(), 3)
    demo.queue()
    assert demo._queue.max_thread_count == 3


def test_gradio_closer_ends_the_mounted_apps_heartbeat_streams() -> None:
    """App.stop_event (of the mounted App, not Blocks.app), Blocks._queue.close() and Blocks.is_running."""
    demo = _blocks()
    demo.queue()
    app = gr.mount_gradio_app(FastAPI(), demo, path="/")
    close = gradio_closer(app, demo)
    server = switchboard.serve_in_thread(app)
    try:
        with httpx.Client(timeout=30) as client, client.stream("GET", f"{server.url}gradio_api/heartbeat/s1") as beat:
            lines = beat.iter_lines()
            assert next(lines) == "data: ALIVE"
            started = time.monotonic()
            close()  # the stream ends by itself (else Gradio sends "data: ALIVE" every 15 s, for ever)
            for _ in lines:
                if time.monotonic() - started > 20:
                    break
            assert time.monotonic() - started < 20, "the heartbeat stream went on after close()"
    finally:
        server.stop()
    assert demo._queue.stopped and demo.is_running is False
    with pytest.raises(ValueError):
        gradio_closer(FastAPI(), demo)


@pytest.fixture
def held() -> gr.Blocks:
    """A Blocks with a State (its delete_callback records values), queued: queue() creates its real
    StateHolder. Session "s1" holds a value, is closed and was last used at 2030-01-01 12:00."""
    deleted: list[Any] = []
    with gr.Blocks() as demo:
        state = gr.State(0, delete_callback=deleted.append)
        gr.Textbox().submit(lambda s: s, state, state)
    demo.queue()
    demo.state_holder["s1"][state._id] = "value"
    demo.state_holder["s1"].is_closed = True
    demo.state_holder.time_last_used["s1"] = datetime.datetime(2030, 1, 1, 12)
    demo.test_deleted = deleted  # type: ignore[attr-defined]
    return demo


def test_held_sessions_reads_gradios_state_holder(held: gr.Blocks) -> None:
    """StateHolder.session_data (SessionState.is_closed) and StateHolder.time_last_used."""
    held.state_holder["s2"]  # an open session, just used
    sessions = held_sessions(held)
    assert sessions is not None and sessions["s1"] == (True, datetime.datetime(2030, 1, 1, 12))
    assert sessions["s2"][0] is False and sessions["s2"][1] is not None
    assert held_sessions(object()) is None  # type: ignore[arg-type]


def test_drop_sessions_runs_the_states_callbacks_and_frees_the_session(held: gr.Blocks) -> None:
    """StateHolder.delete_state, StateHolder.lock, session_data and time_last_used."""
    held.state_holder["s2"]
    assert drop_sessions(held, ["s1"]) == {"s2"}
    assert held.test_deleted == ["value"]  # type: ignore[attr-defined]
    assert "s1" not in held.state_holder.session_data and "s1" not in held.state_holder.time_last_used


def test_busy_sessions_sees_events_waiting_running_or_unfinished(held: gr.Blocks) -> None:
    """Blocks._queue: event_ids_to_events, event_queue_per_concurrency_id[...].queue, active_jobs."""
    queue, fn = held._queue, held.fns[0]
    waiting, running, unfinished = (queueing.Event(sid, fn, None, None) for sid in ("a", "b", "c"))  # type: ignore[arg-type]
    queue.event_queue_per_concurrency_id["x"] = queueing.EventQueue("x", None)
    queue.event_queue_per_concurrency_id["x"].queue.append(waiting)
    queue.active_jobs = [None, [running]]
    queue.event_ids_to_events[unfinished._id] = unfinished
    assert busy_sessions(held) == {"a", "b", "c"}


def test_drop_queue_leftovers_frees_what_the_queue_keeps_per_session(held: gr.Blocks) -> None:
    """Blocks._queue: pending_messages_per_session, pending_event_ids_session, event_analytics."""
    queue = held._queue
    for sid in ("gone", "s1"):
        queue.pending_messages_per_session[sid] = asyncio.Queue()
        queue.pending_event_ids_session[sid] = set()
        queue.event_analytics[f"event-{sid}"] = {"status": "success", "session_hash": sid}
    drop_queue_leftovers(held, held=set(held.state_holder.session_data), busy=set())
    assert "gone" not in queue.pending_messages_per_session and "gone" not in queue.pending_event_ids_session
    assert "event-gone" not in queue.event_analytics
    assert "s1" in queue.pending_messages_per_session and "event-s1" in queue.event_analytics


def test_cache_component_signatures_feeds_what_get_config_asks_inspect_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block.get_config calls inspect.signature(cls.__init__); the class walk starts at gradio.blocks.Block."""

    class Box(gr.Textbox):
        def __init__(self, value: str = "", **kwargs: Any) -> None:
            super().__init__(value, **kwargs)

    assert cache_component_signatures() >= 1
    asked: list[object] = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda obj, *a, **k: asked.append(obj) or real(obj, *a, **k))
    with gr.Blocks():
        box = Box("x")
    box.get_config()
    assert Box.__init__ in asked and real(Box.__init__) is Box.__init__.__signature__  # type: ignore[attr-defined]


def test_warm_up_gradio_enters_the_context_manager_gradio_enters_around_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gradio.utils.MatplotlibBackendMananger, entered by route_utils.call_process_api for every event."""
    assert "MatplotlibBackendMananger()" in inspect.getsource(route_utils.call_process_api)
    entered: list[bool] = []
    real_enter = MatplotlibBackendMananger.__enter__
    monkeypatch.setattr(MatplotlibBackendMananger, "__enter__", lambda self: entered.append(True) or real_enter(self))
    warm_up_gradio().join(60)
    assert entered == [True]


async def test_short_wait_client_gives_up_on_a_long_retry_after_only(fake: FakeUpstream) -> None:
    """BaseClient._should_retry (asked before each retry) and BaseClient._parse_retry_after_header."""
    client = ShortWaitClient(api_key="sk-test", base_url=fake.base_url, max_retries=2)
    client.max_retry_wait = 5
    messages = [{"role": "user", "content": "hi"}]
    try:
        fake.push(Behaviour(status=429, headers={"Retry-After": "10"}))
        with pytest.raises(openai.RateLimitError):  # the SDK alone waits the 10 s out, then tries again
            await asyncio.wait_for(client.chat.completions.create(model="fast", messages=messages), 8)
        assert len(fake.requests) == 1
        fake.push(Behaviour(status=429, headers={"Retry-After": "0.1"}), Behaviour(reply="ok now"))
        answer = await asyncio.wait_for(client.chat.completions.create(model="fast", messages=messages), 30)
        assert answer.choices[0].message.content == "ok now" and len(fake.requests) == 3
    finally:
        await client.close()


def test_hide_progress_reaches_the_events_chat_interface_registers() -> None:
    """ChatInterface unlocks the box after a reply with an event of "full" progress (the overlay and timer
    that covered the box); hide_progress turns it (and every other event updating the box) to "hidden"."""
    from chatbot.compat import hide_progress

    with gr.Blocks() as demo:
        box = gr.MultimodalTextbox()
        gr.ChatInterface(lambda message, history: "hi", multimodal=True, textbox=box, show_progress="hidden")

    def progress() -> set[str]:
        config = demo.get_config_file()
        return {d["show_progress"] for d in config["dependencies"] if box._id in d["outputs"]}

    assert "full" in progress()
    assert hide_progress(demo, [box]) > 0 and progress() == {"hidden"}


def test_name_unnamed_controls_reads_markup_gradios_front_end_renders_and_runs_only_in_the_browser() -> None:
    """What the scripts read is in Gradio's built front end (the MultimodalTextbox and its block title, the
    chatbot's collapsible titles and labelled messages, KaTeX's TeX annotation), and both listeners are
    browser-only (no function on the server, so no request)."""
    assets = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
    front = "".join(p.read_text(errors="replace") for p in
                    [*assets.glob("Index-*.js"), *assets.glob("src-*.js"), *assets.glob("katex-*.js")])
    for markup in ('<span data-testid="block-info">', '<textarea data-testid="textbox">',
                   'class="thumbnail-wrapper', 'class="delete-button', "orig_name",
                   '<div class="thought-group', '<span class="arrow', "expanded:", "'s message: ",
                   "application/x-tex", '<div class="examples svelte-1rn3hyj" role="list">'):
        assert markup in front, markup
    with gr.Blocks() as demo:
        box = gr.MultimodalTextbox(elem_id="message", label="Message", show_label=False)
        name_unnamed_controls(demo, box, {"en": {"remove": "Remove", "refused_type": "", "refused_size": ""}})
    listeners = [fn for fn in demo.fns.values() if fn.js]
    assert len(listeners) == 2 and all(fn.fn is None and not fn.queue for fn in listeners)
    assert {t[1] for fn in listeners for t in fn.targets} == {"load", "change"}


def test_keep_typed_text_changes_the_step_that_empties_the_box_after_a_reply() -> None:
    """ChatInterface's last step after a reply empties the box; keep_typed_text makes it only unlock it."""
    from chatbot.compat import keep_typed_text

    with gr.Blocks() as demo:
        box = gr.MultimodalTextbox()
        gr.ChatInterface(lambda message, history: "hi", multimodal=True, textbox=box)

    def emptying() -> int:
        steps = [f for f in demo.fns.values()
                 if [o._id for o in f.outputs] == [box._id] and not f.inputs and not inspect.iscoroutinefunction(f.fn)]
        return sum(1 for f in steps if (f.fn() or {}).get("value", "") is None)

    assert emptying() == 1
    assert keep_typed_text(demo, box) == 1 and emptying() == 0
