"""chatbot/compat_postprocess.py: the reply's text updates are postprocessed on the loop, the same as Gradio's."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio.to_thread
import gradio as gr
import pytest
from conftest import make_settings, page_client
from fake_upstream import Behaviour, FakeUpstream
from gradio.blocks import Blocks
from gradio.exceptions import ComponentProcessingError
from gradio.state_holder import SessionState

import app as switchboard
from chatbot.compat import upload_folder


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The outputs' postprocess calls Gradio sends to a worker thread, by the component's class."""
    seen: Counter[str] = Counter()
    real = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__name__", None) == "postprocess":
            seen[type(func.__self__).__name__] += 1
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return seen


@pytest.fixture(scope="module")
def demo() -> gr.Blocks:
    return switchboard.build(make_settings("http://127.0.0.1:9/v1"))


def _reply_step(demo: gr.Blocks) -> Any:
    return next(f for f in demo.fns.values() if f.name == "_submit_fn"
                and [type(o).__name__ for o in f.outputs][1:2] == ["Chatbot"])


def _update(step: Any, history: Any, store: Any) -> list[Any]:
    """One update of the reply step: the chat shown and the saved chats; its States unchanged."""
    return [history if type(o).__name__ == "Chatbot" else store if type(o).__name__ == "BrowserState"
            else gr.skip() for o in step.outputs]


async def _both(demo: gr.Blocks, update: list[Any]) -> tuple[Any, Any]:
    """The update as this app postprocesses it, and as Gradio's own ``postprocess_data`` does."""
    step = _reply_step(demo)
    ours = await demo.postprocess_data(step, list(update), SessionState(demo))
    theirs = await Blocks.postprocess_data(demo, step, list(update), SessionState(demo))
    return ours, theirs


TEXT = [{"role": "user", "content": "Hi   there"}, {"role": "assistant", "content": "  Hello!\n  Again."}]
STORE = {"chats": [{"id": "a", "title": "Hi"}]}


async def test_a_text_update_skips_the_thread_and_is_gradios(demo: gr.Blocks, hops: Counter[str]) -> None:
    ours, theirs = await _both(demo, _update(_reply_step(demo), TEXT, STORE))
    assert ours == theirs and ours[1][1]["content"] == [{"text": "Hello!\nAgain.", "type": "text"}]
    assert hops == {"Chatbot": 1, "BrowserState": 1}  # Gradio's own call only; ours ran on the loop


async def test_a_history_with_a_file_still_goes_through_the_thread(demo: gr.Blocks, hops: Counter[str]) -> None:
    image = Path(upload_folder()) / uuid.uuid4().hex / "dot.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    history = [{"role": "user", "content": {"path": str(image)}}, *TEXT]
    ours, theirs = await _both(demo, _update(_reply_step(demo), history, STORE))
    assert ours == theirs and "dot.png" in str(ours)
    assert hops == {"Chatbot": 2, "BrowserState": 1}  # the file's Chatbot in a thread both ways


async def test_an_error_in_postprocess_is_reported_as_gradios(demo: gr.Blocks, hops: Counter[str]) -> None:
    broken = [{"role": "user", "content": "hi"}, {"role": None, "content": "text"}]  # text, but no message
    errors, threads = [], []
    for run in (demo.postprocess_data, lambda *a: Blocks.postprocess_data(demo, *a)):
        with pytest.raises(ComponentProcessingError) as caught:
            await run(_reply_step(demo), _update(_reply_step(demo), broken, STORE), SessionState(demo))
        errors.append((str(caught.value), type(caught.value.__cause__)))
        threads.append(hops["Chatbot"])
    assert errors[0] == errors[1] and "`chatbot` component" in errors[0][0]
    assert threads == [0, 1]  # ours raised on the loop, Gradio's in its thread


async def test_the_served_reply_streams_without_a_thread_hop(fake: FakeUpstream, serve, hops: Counter[str]) -> None:
    """A message through the served app, every step played as the page plays them (bench/page_steps.py): the
    reply is shown whole, and none of its updates' Chatbot or saved-chats postprocess went to a thread."""
    async with page_client(serve()) as (target, values, page):
        hops.clear()
        fake.push(Behaviour(reply="A short answer in a few pieces."))
        done = await target.visit("one", None, "A short answer in a few pieces.", page=values, session_hash=page)
        assert done.ok, done.error
        # the take step's chat (the message shown) and the two steps' saved chats; the reply's updates: none
        assert hops["Chatbot"] <= 1 and hops["BrowserState"] <= 2, hops
