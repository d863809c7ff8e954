"""chatbot/compat_chat.py: one test per use of Gradio's internals, so an upgrade that moves one fails here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from conftest import make_settings, page_client
from fake_upstream import Behaviour, FakeUpstream
from gradio.blocks import BlocksConfig
from gradio.state_holder import SessionState

import app as switchboard
from chatbot.compat_chat import lazy_session_configs
from chatbot.web.chats import new_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmark's client plays the page


def test_lazy_session_configs_configures_a_block_when_gradio_first_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new session configures no block at once; what Gradio reads is the value it built before."""
    lazy_session_configs()
    with gr.Blocks() as demo:
        gr.Textbox(value="a", label="A")
        chat = gr.Chatbot()
        gr.State(1)
    eager = {k: BlocksConfig.config_for_block(k, [], v) for k, v in demo.default_config.blocks.items()
             if k in demo.blocks}
    made: list[int] = []
    original = BlocksConfig.config_for_block
    monkeypatch.setattr(BlocksConfig, "config_for_block",
                        staticmethod(lambda key, *rest: made.append(key) or original(key, *rest)))
    state = SessionState(demo)
    assert made == []  # Gradio's own __init__ configures every block here
    history = [{"role": "user", "content": "hi"}]
    state._update_value_in_config(chat._id, history)  # what every update of the chat does
    assert made == [chat._id] and chat._id in state.config_values
    eager[chat._id]["props"]["value"] = history
    assert list(state.components) == [c for c in eager.values() if c]  # the deep link's read, in order
    assert lazy_session_configs() is False  # once per process


def _chain(config: dict[str, Any], box: int) -> list[dict[str, Any]]:
    """The steps a message from ``box`` runs in the page, as Gradio's front end follows them."""
    deps = {d["id"]: d for d in config["dependencies"]}
    first = min((d for d in deps.values() if [box, "submit"] in [list(t) for t in d["targets"]]
                 and d["api_name"] == "_clear_and_save_textbox"), key=lambda d: d["id"])
    chain, frontier = [first], [first["id"]]
    while frontier:
        nxt = [d for d in deps.values() if d.get("trigger_after") in frontier]
        chain += nxt
        frontier = [d["id"] for d in nxt]
    return chain


async def test_a_message_costs_two_steps_on_the_server_and_the_same_updates(fake: FakeUpstream) -> None:
    """The box's submit chain (shorten_submit_chain, then chatbot/web/message_steps.py): two steps reach the
    server (take the message, with the saved-chats list's change folded in; the reply, which keeps the
    conversation itself), the button steps run in the browser with the update the server sent for them, and
    the merged first step empties the box, keeps the message and shows it."""
    demo = switchboard.build(make_settings(fake.base_url))
    config = demo.get_config_file()
    box = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "message")
    chain = _chain(config, box)
    server = [d for d in chain if d["backend_fn"] and not d.get("js_implementation")]
    browser = [d for d in chain if d.get("js_implementation")]
    assert len(server) == 2 and len(browser) == 3, [(d["id"], d["api_name"]) for d in chain]
    emptied = {"text": "", "files": []}  # what ChatInterface's first step set the box to
    for dep in browser:  # each step's JavaScript gives the update the server gave for it (and Stop's empties)
        out = await demo.process_api(demo.fns[dep["id"]], [], state=SessionState(demo))
        shown = json.loads(dep["js_implementation"].removeprefix("() => (").removesuffix(")"))
        assert dep["outputs"] == [box]
        assert shown == (out["data"][0] if "value" not in shown else {**out["data"][0], "value": emptied})
    stop = next(d for d in browser if d["trigger_only_on_success"])
    assert stop["trigger_after"] == server[0]["id"] and '"stop_btn": true' in stop["js_implementation"]
    take = demo.fns[server[0]["id"]]
    session = SessionState(demo)
    session[take.inputs[3]._id] = new_id()  # the chat on screen (the panel's `shown`, after the store)
    values = [{"text": "hello", "files": []}, *[None] * (len(take.inputs) - 1)]
    out = await demo.process_api(take, values, state=session)
    _, shown_chat, store = out["data"][:3]
    assert shown_chat[-1]["role"] == "user" and "hello" in json.dumps(shown_chat[-1]["content"])
    assert "hello" in json.dumps(store)  # the list's change (the panel's started) came with it
    chatbot_state = next(c["id"] for c in config["components"] if c["type"] == "state"
                         and c["id"] in server[1]["outputs"])
    assert chatbot_state in server[1]["outputs"] and not [d for d in chain if d["trigger_after"] == server[1]["id"]
                                                          and d["backend_fn"] and not d.get("js_implementation")]


async def test_a_shortened_chain_keeps_the_conversation_for_the_next_message(fake: FakeUpstream, serve) -> None:
    """Two messages from one page, every step it sends played as Gradio's front end plays them (bench/page_steps.py):
    each reply is shown whole and saved in the page's store, the second request upstream carries the first
    exchange, and each message costs the server three requests (take it, the reply, the saved chat)."""
    async with page_client(serve()) as (target, values, page):
        target.page_steps.sent.clear()
        fake.push(Behaviour(reply="First answer."), Behaviour(reply="Second answer."))
        first = await target.visit("one", None, "First answer.", page=values, session_hash=page)
        assert first.ok, first.error
        second = await target.visit("two", None, "Second answer.", page=values, session_hash=page)
        assert second.ok, second.error
        sent = [(m["role"], m["content"]) for m in fake.last.messages if m["role"] != "system"]
        assert [r for r, _ in sent] == ["user", "assistant", "user"] and "First answer." in json.dumps(sent)
        steps = sorted(k.split()[-1] for k in target.page_steps.sent.elements())
        assert steps == sorted(["_clear_and_save_textbox", "_submit_fn", "saved"] * 2), target.page_steps.sent
        store = next(v for cid, v in values.items() if target.types.get(cid) == "browserstate")
        assert "Second answer." in json.dumps(store) and "unfinished" not in json.dumps(store)


def test_track_states_by_step_scans_the_pages_events_once_per_step() -> None:
    """Which State outputs another event listens to is found once per step; every call still hashes the
    values, so a changed State is seen as Gradio sees it."""
    from chatbot.compat_chat import track_states_by_step

    with gr.Blocks() as demo:
        watched, quiet = gr.State(1), gr.State(2)
        box = gr.Textbox()
        box.submit(lambda: (3, 4), None, [watched, quiet])
        watched.change(lambda v: v, watched, box)
    block_fn = next(f for f in demo.fns.values() if f.outputs == [watched, quiet])
    original = demo.get_state_ids_to_track(block_fn, SessionState(demo))

    class Counted(dict):
        scans = 0

        def values(self):  # noqa: ANN202
            Counted.scans += 1
            return super().values()

    track_states_by_step(demo)
    state = SessionState(demo)
    state.blocks_config.fns = Counted(state.blocks_config.fns)
    assert demo.get_state_ids_to_track(block_fn, state) == original == ([watched._id], [original[1][0]])
    scanned = Counted.scans
    state[watched._id] = 5
    ids, hashes = demo.get_state_ids_to_track(block_fn, state)
    assert Counted.scans == scanned  # Gradio's own scans the page's events again at every call
    assert ids == [watched._id] and hashes != original[1]


async def test_calmer_queue_sleeps_longer_while_no_event_waits() -> None:
    """Gradio's queue looks for events every millisecond while none waits; after the touch every 10 ms (and
    for progress every 100 ms)."""
    import asyncio

    from chatbot.compat_chat import PROGRESS_IDLE_SLEEP, QUEUE_IDLE_SLEEP, calmer_queue

    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(lambda text: text.upper(), box, box)
    demo.queue()
    queue = demo._queue
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (0.001, 0.01)  # Gradio's
    calmer_queue(demo)
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (QUEUE_IDLE_SLEEP, PROGRESS_IDLE_SLEEP)
    turns = 0
    real_sleep = asyncio.sleep

    async def counted(delay: float, *args: Any) -> Any:
        nonlocal turns
        turns += delay == QUEUE_IDLE_SLEEP
        return await real_sleep(delay, *args)

    asyncio.sleep = counted  # type: ignore[assignment]
    try:
        queue.stopped = False
        loop = asyncio.create_task(queue.start_processing())
        await real_sleep(0.3)
        queue.stopped = True
        await asyncio.wait_for(loop, 5)
    finally:
        asyncio.sleep = real_sleep  # type: ignore[assignment]
    assert 0 < turns < 60  # Gradio's own loop turns about 300 times in 0.3 s


async def test_fold_runs_a_second_step_in_the_first_ones_request() -> None:
    """compat_steps.fold: one request runs both functions, the second reading the State the first just set and
    given the event's request; nothing triggers the second any more."""
    from chatbot.compat_steps import fold

    with gr.Blocks() as demo:
        box, shown, listed, kept = gr.Textbox(), gr.Textbox(), gr.Textbox(), gr.State(None)
        box.submit(lambda text: (text.upper(), text), box, [shown, kept])

        def listing(taken: str, request: gr.Request) -> str:
            return f"{taken} from {request.headers['x-tab']}"

        box.submit(listing, kept, listed)
    host, guest = (next(f for f in demo.fns.values() if f.outputs[0] is o) for o in (shown, listed))
    fold(host, guest)
    assert guest.targets == [] and guest.trigger_after is None
    request = gr.Request(headers={"x-tab": "tab-7"})
    out = await demo.process_api(host, ["hi", None], state=SessionState(demo), request=request)
    assert out["data"] == ["HI", None, "hi from tab-7"]


async def test_extend_reply_steps_adds_inputs_and_outputs_to_every_reply_update() -> None:
    """compat_steps.extend_reply_steps: ChatInterface's reply step also reads an input and answers an output,
    through ``along`` (given the event's request), for each update; reply_steps finds it."""
    from chatbot.compat_steps import extend_reply_steps, reply_steps

    async def respond(message: str, history: list):  # noqa: ANN202
        for word in ("one", "one two"):
            yield word

    with gr.Blocks() as demo:
        chat = gr.ChatInterface(respond)
        extra_in, extra_out = gr.Textbox(value="given"), gr.Textbox()

    async def along(updates, values, request):  # noqa: ANN001, ANN202
        async for update in updates:
            yield (*update, f"{values[0]}:{update[1][-1]['content']}:{request.headers['x-tab']}")

    assert len(reply_steps(demo, chat)) >= 1
    assert extend_reply_steps(demo, chat, [extra_in], [extra_out], along) == len(reply_steps(demo, chat))
    step = next(f for f in reply_steps(demo, chat) if f.inputs[0] is chat.saved_input)
    assert step.inputs[-1] is extra_in and step.outputs[-1] is extra_out
    state = SessionState(demo)
    state[chat.saved_input._id], state[chat.chatbot_state._id] = "hello", []
    request, seen, iterator = gr.Request(headers={"x-tab": "t9"}), [], None
    while True:
        out = await demo.process_api(step, [None, None, "given"], state=state, request=request, iterator=iterator)
        iterator = out.get("iterator")
        if iterator is None:
            break
        seen.append(out["data"][-1])
    assert seen == ["given:one:t9", "given:one two:t9"]


def test_drop_after_takes_a_step_out_of_its_chain() -> None:
    """compat_steps.drop_after: the follower no longer runs after the step; what followed it follows the step."""
    from chatbot.compat_steps import drop_after

    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(lambda t: t, box, box).then(lambda t: t + "1", box, box).then(lambda t: t + "2", box, box)
    first, middle, last = sorted(demo.fns.values(), key=lambda f: f._id)
    drop_after(demo, first, middle)
    assert last.trigger_after == first._id and middle.trigger_after is None and middle.targets == []
    deps = {d["id"]: d for d in demo.get_config_file()["dependencies"]}
    assert deps[last._id]["trigger_after"] == first._id and deps[middle._id]["targets"] == []
